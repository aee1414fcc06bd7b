"""Meta-features: exact partition-parallel moments, and values that follow the data."""

from __future__ import annotations

import math

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from adp.errors import DataError
from adp.tuning.metafeatures import (
    NAMES,
    compute_metafeatures,
    merge_moments,
    moment_features,
    partial_moments,
    sample_features,
)


def _frame(X: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])


def test_merged_partials_equal_the_moments_of_the_whole():
    rng = np.random.default_rng(0)
    X = rng.lognormal(mean=5.0, sigma=0.7, size=(900, 3))  # large mean: a cancellation trap
    features = ["f0", "f1", "f2"]
    whole = partial_moments(_frame(X), features)
    cuts = [0, 7, 300, 301, 900]
    parts = [
        partial_moments(_frame(X[a:b]), features) for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    parts.insert(2, partial_moments(_frame(X[:0]), features))  # an empty partition
    merged = parts[0]
    for part in parts[1:]:
        merged = merge_moments(merged, part)
    assert merged["n"] == 900
    for key in ("mean", "m2", "m3", "m4", "min", "max", "co"):
        np.testing.assert_allclose(merged[key], whole[key], rtol=1e-9, atol=1e-6)


def test_moment_features_match_scipy():
    rng = np.random.default_rng(1)
    X = np.column_stack([rng.exponential(size=2000), rng.normal(size=2000)])
    X = np.column_stack([X, X[:, 1] * 2 + rng.normal(scale=0.1, size=2000)])
    values = moment_features(partial_moments(_frame(X), ["f0", "f1", "f2"]))
    skew = np.abs(stats.skew(X, axis=0))
    kurt = np.log1p(np.maximum(stats.kurtosis(X, axis=0), 0))
    assert values["mean_abs_skew"] == pytest.approx(skew.mean(), rel=1e-9)
    assert values["max_abs_skew"] == pytest.approx(skew.max(), rel=1e-9)
    assert values["mean_log_kurtosis"] == pytest.approx(kurt.mean(), rel=1e-9)
    corr = np.abs(np.corrcoef(X, rowvar=False)[~np.eye(3, dtype=bool)])
    assert values["mean_abs_corr"] == pytest.approx(corr.mean(), rel=1e-9)
    assert values["max_abs_corr"] == pytest.approx(corr.max(), rel=1e-9)
    assert values["log_rows"] == pytest.approx(math.log10(2000))
    assert values["constant_share"] == 0.0


def test_sample_features_see_discreteness_and_tails():
    rng = np.random.default_rng(2)
    discrete = rng.integers(0, 5, size=(1000, 4)).astype(float)
    smooth = rng.normal(size=(1000, 4))
    heavy = rng.standard_t(df=1, size=(1000, 4))
    d, s, h = (sample_features(X) for X in (discrete, smooth, heavy))
    assert d["low_cardinality_share"] == 1.0 and s["low_cardinality_share"] == 0.0
    assert d["mean_unique_share"] < 0.01 < s["mean_unique_share"]
    assert h["mean_tail_share"] > 5 * s["mean_tail_share"]


@pytest.mark.slow  # the first landmarker fits compile HBOS's kernel on each worker
def test_metafeatures_on_the_cluster_do_not_depend_on_partitioning(client):
    rng = np.random.default_rng(3)
    frame = _frame(rng.normal(size=(3000, 5)))
    frame["f4"] = frame["f0"] * 0.9 + rng.normal(scale=0.2, size=3000)
    with client.as_current():
        one = compute_metafeatures(dd.from_pandas(frame, npartitions=1), random_state=0)
        five = compute_metafeatures(dd.from_pandas(frame, npartitions=5), random_state=0)
    assert one.rows == five.rows == 3000 and one.features == 5
    assert list(one.values) == list(NAMES)
    assert np.isfinite(one.vector()).all() and one.seconds > 0
    for name in ("mean_abs_skew", "mean_log_kurtosis", "mean_abs_corr", "top_eigen_share"):
        assert one.values[name] == pytest.approx(five.values[name], rel=1e-9, abs=1e-12), name
    assert one.values["max_abs_corr"] > 0.9  # f0 and f4
    assert one.landmark_rows == 1024
    # The landmarkers agree with each other on plain Gaussian data.
    assert one.values["mean_landmark_corr"] > 0.5


def test_metafeature_errors_name_the_column(client):
    frame = _frame(np.arange(20.0).reshape(10, 2))
    frame.loc[3, "f1"] = np.nan
    ddf = dd.from_pandas(frame, npartitions=2)
    with client.as_current():
        with pytest.raises(DataError, match=r"columns \['nope'\] are not in the data"):
            compute_metafeatures(ddf, ["f0", "nope"])
        with pytest.raises(DataError, match="f1"):
            compute_metafeatures(ddf)

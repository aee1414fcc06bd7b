"""``contamination="auto"``: robust rules (MAD, IQR) from exact global quantiles."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

import adp
from adp.detect.threshold import AutoThreshold, Contamination, FixedScore, from_spec
from adp.errors import ConfigError, DetectorError


def _lower_median(values: np.ndarray) -> float:
    # kth_largest(0.5) is the ceil(n / 2)-th largest value: the lower median for even n
    return float(np.sort(values)[::-1][int(np.ceil(0.5 * values.size)) - 1])


def _series(values: np.ndarray, npartitions: int) -> dd.Series:
    return dd.from_pandas(pd.Series(values, name="score"), npartitions=npartitions)


def test_from_spec_accepts_auto() -> None:
    assert isinstance(from_spec(contamination="auto"), AutoThreshold)
    assert from_spec(contamination="AUTO", auto_method="iqr").method == "iqr"
    assert isinstance(from_spec(contamination=0.05), Contamination)
    assert isinstance(from_spec(score=2.0), FixedScore)
    with pytest.raises(DetectorError, match=r"threshold\.contamination .*'auto'"):
        from_spec(contamination="most")
    with pytest.raises(ConfigError, match="mad, iqr"):
        from_spec(contamination="auto", auto_method="otsu")
    with pytest.raises(DetectorError, match="'auto'"):
        adp.create_detector("hbos", contamination="lots")


def test_mad_and_iqr_rules_use_exact_global_quantiles(client: Client) -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(size=5001), rng.normal(8, 1, size=60)])
    rng.shuffle(values)
    series = _series(values, 7)

    median = _lower_median(values)
    mad = _lower_median(np.abs(values - median))
    expected_mad = median + 3.5 * mad / 0.6745
    assert AutoThreshold("mad").resolve(series).compute() == pytest.approx(expected_mad, rel=1e-12)

    ranked = np.sort(values)[::-1]
    q3 = ranked[int(np.ceil(0.25 * values.size)) - 1]
    q1 = ranked[int(np.ceil(0.75 * values.size)) - 1]
    expected_iqr = q3 + 1.5 * (q3 - q1)
    assert AutoThreshold("iqr").resolve(series).compute() == pytest.approx(expected_iqr, rel=1e-12)

    # Both rules follow any increasing affine map of the scores (standardising changes nothing)
    for method in ("mad", "iqr"):
        base = AutoThreshold(method).resolve(series).compute()
        moved = AutoThreshold(method).resolve(_series(3 * values + 10, 3)).compute()
        assert moved == pytest.approx(3 * base + 10, rel=1e-9)


def test_no_spread_flags_only_scores_above_the_median(client: Client) -> None:
    values = np.array([1.0] * 90 + [5.0] * 3)
    threshold = AutoThreshold("mad").resolve(_series(values, 4)).compute()
    assert 1.0 < threshold <= 5.0


def test_detector_with_auto_contamination_flags_the_outliers(client: Client) -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3000, 4))
    X[:30] += 9
    ddf = dd.from_pandas(pd.DataFrame(X, columns=list("abcd")), npartitions=5)
    det = adp.create_detector("ecod", contamination="auto").fit(ddf)
    out = det.detect(ddf).compute()
    assert out["is_anomaly"].iloc[:30].all()
    assert out["is_anomaly"].mean() < 0.1
    assert isinstance(det.threshold_rule(None), AutoThreshold)

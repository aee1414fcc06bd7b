"""The Python API on a real LocalCluster: detectors by name, fit on a sample, lazy scores,
global thresholds, partition invariance and row identity."""

from __future__ import annotations

import math

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import adp
from adp.errors import DataError, DetectorError, NotFittedError

CORE = ["isolation_forest", "ecod", "copod", "hbos", "lof", "knn", "one_class_svm", "pca"]


def _frame(n: int = 3000, d: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])
    df["label"] = 0
    df.loc[: n // 50, "f0"] += 8  # a few obvious anomalies
    df.loc[: n // 50, "label"] = 1
    df["sensor"] = [f"s{i % 7}" for i in range(n)]
    df["row_id"] = np.arange(n)
    return df


def _uneven(df: pd.DataFrame, sizes: list[int]) -> dd.DataFrame:
    assert sum(sizes) == len(df)
    bounds = np.cumsum([0, *sizes])
    parts = [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return dd.concat([dd.from_pandas(p, npartitions=1) for p in parts])


def test_names_aliases_and_defaults() -> None:
    assert adp.create_detector("iforest").name == "isolation_forest"
    assert adp.create_detector("ocsvm").name == "one_class_svm"
    assert adp.create_detector("ECOD").name == "ecod"
    for name in CORE:
        assert adp.create_detector(name).contamination == 0.1


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(DetectorError, match="isolation_forest") as info:
        adp.create_detector("forest_of_doom")
    assert "forest_of_doom" in str(info.value)


def test_unknown_parameter_lists_valid_parameters() -> None:
    with pytest.raises(DetectorError, match="n_estimators") as info:
        adp.create_detector("iforest", n_trees=10)
    assert "n_trees" in str(info.value)


def test_contamination_out_of_range() -> None:
    with pytest.raises(DetectorError, match="contamination"):
        adp.create_detector("hbos", contamination=0.9)


def test_score_before_fit() -> None:
    with pytest.raises(NotFittedError, match="fit"):
        adp.create_detector("hbos").detect(dd.from_pandas(_frame(100), npartitions=2))


@pytest.mark.slow
def test_fit_sample_is_bounded_and_features_remembered(client) -> None:
    df = _frame(5000)
    ddf = dd.from_pandas(df, npartitions=5)
    det = adp.create_detector("hbos").fit(ddf, sample_rows=1000, exclude=["label", "row_id"])
    assert det.features_ == ["f0", "f1", "f2", "f3"]  # numeric, not excluded, not strings
    assert det.n_samples_fit_ == 1000
    assert det.n_rows_seen_ == 5000
    small = adp.create_detector("hbos").fit(ddf, features=["f1", "f2"], sample_rows=10**6)
    assert small.n_samples_fit_ == 5000  # every row when there are fewer


def test_sample_is_uniform_across_uneven_partitions(client) -> None:
    from adp.detect.sampling import uniform_sample

    df = pd.DataFrame({"x": np.arange(20_000, dtype=float)})
    ddf = _uneven(df, [100, 15_000, 4_000, 900])
    parts, size, total = uniform_sample(ddf, 2000, random_state=1)
    sample = pd.concat(client.compute(parts, sync=True))
    assert (size, total, len(sample)) == (2000, 20_000, 2000)
    assert sample["x"].is_unique
    # each partition contributes in proportion to its length (hypergeometric, 5 sigma)
    share = np.histogram(sample["x"], bins=[0, 100, 15_100, 19_100, 20_000])[0] / 2000
    expected = np.array([100, 15_000, 4_000, 900]) / 20_000
    assert np.all(np.abs(share - expected) < 5 * np.sqrt(expected * (1 - expected) / 2000) + 1e-3)


def test_fit_rejects_missing_and_non_numeric_columns(client) -> None:
    ddf = dd.from_pandas(_frame(200), npartitions=2)
    with pytest.raises(DataError, match="nope"):
        adp.create_detector("hbos").fit(ddf, features=["f0", "nope"])
    with pytest.raises(DataError, match="sensor"):
        adp.create_detector("hbos").fit(ddf, features=["f0", "sensor"])


def test_score_is_lazy_one_task_per_partition_and_keeps_keys(client) -> None:
    df = _frame(2000)
    ddf = dd.from_pandas(df, npartitions=6)
    det = adp.create_detector("iforest", random_state=0, contamination=0.05)
    det.fit(ddf, exclude=["label", "row_id"])
    scored = det.detect(ddf, key=["sensor", "row_id"])
    assert isinstance(scored, dd.DataFrame)
    assert scored.npartitions == ddf.npartitions
    assert list(scored.columns) == ["sensor", "row_id", "score", "is_anomaly"]
    out = scored.compute()
    assert out["score"].dtype == np.float64
    assert out["is_anomaly"].dtype == bool
    # row identity: every input row exactly once, index and keys intact
    assert out["row_id"].is_unique and len(out) == len(df)
    pd.testing.assert_index_equal(out.sort_values("row_id").index, df.index)
    # the injected anomalies score highest
    assert out.loc[out["row_id"] <= 40, "is_anomaly"].mean() > 0.9


@pytest.mark.parametrize("fraction", [0.01, 0.05, 0.1])
def test_threshold_is_global_across_uneven_and_empty_partitions(client, fraction) -> None:
    df = _frame(6000, seed=3)
    # anomalies all sit in the first, tiny partition; one partition is empty
    ddf = _uneven(df, [150, 0, 4000, 50, 1800])
    det = adp.create_detector("ecod", contamination=fraction).fit(ddf, exclude=["label"])
    out = det.detect(ddf, key=["row_id"]).compute()
    assert len(out) == 6000
    assert out["is_anomaly"].sum() == math.ceil(fraction * 6000)
    per_partition = out.groupby(out["row_id"] < 150)["is_anomaly"].mean()
    assert per_partition[True] > 2 * fraction  # not `fraction` within each partition


def test_fixed_score_threshold(client) -> None:
    ddf = dd.from_pandas(_frame(1000), npartitions=3)
    det = adp.create_detector("hbos").fit(ddf, exclude=["label", "row_id"])
    out = det.detect(ddf, threshold=5.0).compute()
    np.testing.assert_array_equal(out["is_anomaly"], out["score"] >= 5.0)


@pytest.mark.parametrize("name", CORE)
def test_scores_do_not_depend_on_partitioning(client, name) -> None:
    df = _frame(1500, d=3, seed=5)
    params = {"random_state": 0} if name == "isolation_forest" else {}
    det = adp.create_detector(name, **params).fit(
        dd.from_pandas(df, npartitions=3), exclude=["label", "row_id"]
    )
    one = det.decision_function(dd.from_pandas(df, npartitions=1)).compute()
    seven = det.decision_function(dd.from_pandas(df, npartitions=7)).compute()
    np.testing.assert_allclose(one, seven, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["ecod", "copod"])
def test_frozen_ecdf_matches_pyod_on_training_rows(client, name) -> None:
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    df = _frame(1200, seed=9)
    features = ["f0", "f1", "f2", "f3"]
    det = adp.create_detector(name).fit(dd.from_pandas(df, npartitions=4), features=features)
    ours = det.decision_function(dd.from_pandas(df, npartitions=4)).compute()
    reference = (ECOD() if name == "ecod" else COPOD()).fit(df[features].to_numpy())
    np.testing.assert_allclose(ours.to_numpy(), reference.decision_scores_, rtol=1e-12)


def test_frozen_ecod_scores_new_rows_without_batch_effects(client) -> None:
    from pyod.models.ecod import ECOD

    train = _frame(1000, seed=1)
    new = _frame(400, seed=2)
    features = ["f0", "f1", "f2", "f3"]
    det = adp.create_detector("ecod").fit(dd.from_pandas(train, npartitions=2), features=features)
    batch = det.scorer_.decision_function(new[features].to_numpy())
    single = np.array(
        [det.scorer_.decision_function(new[features].to_numpy()[i : i + 1])[0] for i in range(20)]
    )
    np.testing.assert_allclose(batch[:20], single)
    # PyOD's own scoring of the same rows depends on the batch they come in
    pyod = ECOD().fit(train[features].to_numpy())
    pyod_batch = pyod.decision_function(new[features].to_numpy())[:20]
    pyod_single = np.array(
        [pyod.decision_function(new[features].to_numpy()[i : i + 1])[0] for i in range(20)]
    )
    assert np.abs(pyod_batch - pyod_single).max() > 1e-6


def test_missing_values_name_partition_and_column(client) -> None:
    df = _frame(600)
    det = adp.create_detector("hbos").fit(
        dd.from_pandas(df, npartitions=3), exclude=["label", "row_id"]
    )
    bad = df.copy()
    bad.loc[450, "f2"] = np.nan
    with pytest.raises(DataError, match=r"partition 2.*'f2': 1"):
        det.detect(dd.from_pandas(bad, npartitions=3)).compute()


class _CountingScorer:
    """Wraps a fitted scorer and counts the rows it scores (single process: sync scheduler)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.rows = 0

    def decision_function(self, X):
        self.rows += len(X)
        return self.inner.decision_function(X)


def test_score_computes_each_partition_once() -> None:
    # The threshold's passes and the flags share the scored partitions: one compute of the
    # flags scores every row exactly once (it used to score every partition twice).
    ddf = dd.from_pandas(_frame(4000), npartitions=5)
    with dask.config.set(scheduler="sync"):
        det = adp.create_detector("hbos", contamination=0.05).fit(
            ddf, sample_rows=1000, random_state=0
        )
        counting = _CountingScorer(det.scorer_)
        det.scorer_ = counting
        flagged = det.detect(ddf, key=["row_id"]).compute()
    assert counting.rows == 4000
    assert int(flagged["is_anomaly"].sum()) == 200
    assert flagged["row_id"].tolist() == list(range(4000))


def test_parquet_partition_lengths_come_from_the_footers(tmp_path, client) -> None:
    from adp.detect.sampling import known_lengths, partition_lengths

    df = _frame(3000)
    for i, (a, b) in enumerate([(0, 100), (100, 1800), (1800, 3000)]):
        df.iloc[a:b].to_parquet(tmp_path / f"part.{i}.parquet")
    ddf = adp.read(str(tmp_path))[["f0", "f1"]]
    parts = ddf.to_delayed()
    assert known_lengths(ddf, len(parts)) == [100, 1700, 1200] == partition_lengths(parts)
    assert known_lengths(ddf, len(parts) + 1) is None  # partitions fused: count instead
    # A frame dask cannot count from metadata falls back to counting.
    computed = ddf.map_partitions(lambda p: p[p["f0"] > 0])
    assert known_lengths(computed, computed.npartitions) is None


def test_a_column_projection_that_fuses_parquet_partitions_still_detects(tmp_path, client) -> None:
    """Reading a few of many columns lets dask fuse small Parquet files into fewer
    partitions while optimising; the shared score partitions must follow (it failed with
    'divisions should be a tuple of len(dfs) + 1')."""
    rng = np.random.default_rng(0)
    columns = [f"c{j}" for j in range(12)]
    for i in range(8):
        frame = pd.DataFrame(rng.normal(size=(500, 12)), columns=columns)
        frame.assign(row=np.arange(i * 500, (i + 1) * 500)).to_parquet(tmp_path / f"p{i}.parquet")
    narrow = adp.read(str(tmp_path), columns=["row", "c0", "c1"])
    det = adp.create_detector("iforest", contamination=0.05, random_state=0)
    det.fit(narrow, features=["c0", "c1"], random_state=0)
    got = det.detect(narrow, key=["row"]).compute().sort_values("row")
    whole = det.detect(adp.read(str(tmp_path)), key=["row"]).compute().sort_values("row")
    assert len(got) == 4000 and int(got["is_anomaly"].sum()) == 200
    np.testing.assert_array_equal(got["score"].to_numpy(), whole["score"].to_numpy())

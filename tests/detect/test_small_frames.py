"""One small in-memory partition is fitted and scored in this process, exactly as the
cluster would have done it."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client, get_task_stream

import adp
from adp.detect import local
from adp.detect.detection import run_detection


def _frame(rows: int = 1000, features: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(rows, features)), columns=[f"f{i}" for i in range(features)])
    df.iloc[:10] += 8.0
    df["sensor"] = rng.choice(["a", "b"], size=rows)
    return df


def _fit_and_detect(name: str, ddf: dd.DataFrame, **params: object):
    det = adp.create_detector(name, contamination=0.05, **params).fit(ddf, exclude=["sensor"])
    detection = run_detection(det, ddf, key=["sensor"], explain=2)
    return det, detection


@pytest.mark.slow  # the first fits of a session compile kernels, here and on the workers
@pytest.mark.parametrize(
    ("name", "params"),
    [("iforest", {"random_state": 3}), ("ecod", {}), ("hbos", {})],
)
def test_a_small_frame_gets_the_clusters_results_without_the_cluster(
    client: Client, monkeypatch: pytest.MonkeyPatch, name: str, params: dict
) -> None:
    ddf = dd.from_pandas(_frame(), npartitions=1)
    assert local.runs_locally(ddf)
    with get_task_stream(client) as tasks:
        det, fast = _fit_and_detect(name, ddf, **params)
    assert tasks.data == []  # fit, scores, threshold and flags: nothing ran on the workers
    assert isinstance(fast.threshold, float)
    fast_out = fast.frame.compute()

    monkeypatch.setattr(local, "runs_locally", lambda ddf, max_cells=0: False)
    with get_task_stream(client) as tasks:
        cluster_det, slow = _fit_and_detect(name, ddf, **params)
        slow_out, slow_threshold = slow.frame.compute(), slow.threshold.compute()
    assert tasks.data  # the same work on the workers
    assert fast.frame.npartitions == slow.frame.npartitions == 1
    assert fast.frame.divisions == slow.frame.divisions
    pd.testing.assert_series_equal(fast.frame.dtypes, slow.frame.dtypes)
    assert fast.threshold == slow_threshold
    pd.testing.assert_frame_equal(fast_out, slow_out)
    assert int(fast_out["is_anomaly"].sum()) == 50  # 5% of 1,000, exactly
    assert fast_out.loc[:9, "is_anomaly"].all()
    assert det.n_samples_fit_ == cluster_det.n_samples_fit_ == 1000


def test_detect_of_a_small_frame_returns_a_dask_frame(client: Client) -> None:
    df = _frame(500)
    ddf = dd.from_pandas(df, npartitions=1)
    det = adp.create_detector("hbos").fit(ddf, exclude=["sensor"])
    out = det.detect(ddf, key=["sensor"])
    assert isinstance(out, dd.DataFrame)
    assert list(out.columns) == ["sensor", "score", "is_anomaly"]
    computed = out.compute()
    pd.testing.assert_index_equal(computed.index, df.index)
    np.testing.assert_array_equal(computed["score"], det.decision_function(ddf).compute())


def test_what_counts_as_small(tmp_path) -> None:
    df = _frame(1000).drop(columns="sensor")
    one = dd.from_pandas(df, npartitions=1)
    assert local.runs_locally(one)
    assert local.scheduler_for(one) == "sync"
    assert local.runs_locally(one[["f0", "f1"]])
    assert not local.runs_locally(dd.from_pandas(df, npartitions=2))  # more than one part
    assert not local.runs_locally(one, max_cells=len(df) * 6 - 1)  # too many cells
    assert local.scheduler_for(dd.from_pandas(df, npartitions=2)) is None
    # a length only a computation can tell
    assert not local.runs_locally(one[one["f0"] > 0])
    # read from storage: the cluster reads it
    df.to_parquet(tmp_path / "small.parquet")
    assert not local.runs_locally(dd.read_parquet(tmp_path / "small.parquet"))


@pytest.mark.parametrize("missing", ["drop", "impute_median"])
def test_the_missing_value_policy_is_the_clusters_too(
    client: Client, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    df = _frame(400).drop(columns="sensor")
    df.iloc[5:40:3, 1] = np.nan
    ddf = dd.from_pandas(df, npartitions=1)

    def fit_and_detect() -> tuple[float, pd.DataFrame]:
        det = adp.create_detector("ecod", contamination=0.05).fit(ddf, missing=missing)
        detection = run_detection(det, ddf)
        threshold = detection.threshold
        value = threshold if isinstance(threshold, float) else threshold.compute()
        return value, detection.frame.compute()

    fast_threshold, fast = fit_and_detect()
    monkeypatch.setattr(local, "runs_locally", lambda ddf, max_cells=0: False)
    slow_threshold, slow = fit_and_detect()
    assert fast_threshold == slow_threshold
    pd.testing.assert_frame_equal(fast, slow)
    assert len(fast) == (len(df) - 12 if missing == "drop" else len(df))

"""Labelled and unlabelled searches on the real LocalCluster (2 worker processes)."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import dask.dataframe as dd
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import adp
from adp.errors import ConfigError, DataError

FAILING_KNN = {"knn": {"n_neighbors": [5, 10**6]}}  # more neighbours than rows: fit fails
SMALL_FOREST = {"isolation_forest": {"n_estimators": [30, 60], "max_samples": [128]}}


def _auc(detector, ddf) -> float:
    scores = detector.decision_function(ddf).compute()
    return float(roc_auc_score(ddf["label"].compute().loc[scores.index], scores))


def _check_board(board):
    assert list(board.columns[:4]) == ["trial", "detector", "params", "score"]
    assert {"fit_seconds", "status", "error"} <= set(board.columns)
    ok = board[board["status"] == "ok"]
    assert list(ok.index) == list(range(len(ok)))  # ok rows first
    assert ok["score"].is_monotonic_decreasing
    assert ok["error"].isna().all()
    assert (ok["fit_seconds"] > 0).all()


def test_labelled_search_on_both_engines(client, labelled, missing_extra_detector):
    space = {**SMALL_FOREST, "pca": None, missing_extra_detector: None, **FAILING_KNN}
    results = {
        engine: adp.search(
            labelled,
            space,
            label="label",
            max_trials=6,
            cv=3,
            random_state=0,
            engine=engine,
            refit=engine == "dask-ml",
        )
        for engine in ("dask-ml", "futures")
    }
    ml, fut = results["dask-ml"], results["futures"]
    assert (ml.engine, fut.engine) == ("dask-ml", "futures")
    assert ml.features == [f"f{i}" for i in range(5)] and ml.supervised and ml.cv == 3
    for result in results.values():
        board = result.leaderboard
        _check_board(board)
        assert len(board) == 7 and (board["status"] == "ok").sum() == 5
        failed = board[board["status"] == "failed"]
        assert failed["params"].tolist() == [{"n_neighbors": 10**6}]
        assert "n_neighbors" in failed["error"].iloc[0] and math.isnan(failed["score"].iloc[0])
        skipped = board[board["status"] == "skipped"]
        assert skipped["detector"].tolist() == [missing_extra_detector]
        assert "pip install 'adp[deep]'" in skipped["error"].iloc[0]
        assert (board[board["status"] == "ok"]["score"] > 0.5).all()

    # Same sample, same folds, same metric code: the engines agree trial by trial.
    a = ml.leaderboard.set_index("trial")["score"]
    b = fut.leaderboard.set_index("trial")["score"]
    np.testing.assert_allclose(a.sort_index(), b.sort_index(), equal_nan=True, atol=1e-12)

    best = ml.best_detector
    assert best is not None and best.is_fitted and best.name == ml.best["detector"]
    assert best.params == ml.best_params
    assert _auc(best, labelled) > 0.9
    assert fut.best_detector is not None and not fut.best_detector.is_fitted  # refit=False
    assert ml.metrics()["score"] == pytest.approx(ml.best_score)


def test_f1_is_judged_at_the_contamination_threshold(client, labelled):
    result = adp.search(
        labelled,
        {"pca": None},
        label="label",
        metric="f1",
        max_trials=2,
        cv=2,
        contamination=0.06,
        random_state=1,
        engine="futures",
        refit=False,
    )
    ok = result.leaderboard[result.leaderboard["status"] == "ok"]
    assert result.metric == "f1" and len(ok) == 2
    assert ((ok["score"] > 0.5) & (ok["score"] <= 1)).all()


def test_unlabelled_search_ranks_by_model_centrality(client, labelled):
    data = labelled.drop(columns="label")
    space = {**SMALL_FOREST, "pca": None, "ecod": None, **FAILING_KNN}
    result = adp.search(data, space, max_trials=7, random_state=0)
    assert not result.supervised and result.metric == "model_centrality"
    assert result.engine == "futures" and result.label is None and result.cv is None
    board = result.leaderboard
    _check_board(board)
    ok = board[board["status"] == "ok"]
    assert len(ok) == 6 and ((ok["score"] >= -1) & (ok["score"] <= 1)).all()
    assert board[board["status"] == "failed"]["detector"].tolist() == ["knn"]
    assert result.best_detector is not None and result.best_detector.is_fitted
    assert _auc(result.best_detector, labelled) > 0.8

    consensus = adp.search(
        data, space, metric="top_consensus", max_trials=7, random_state=0, refit=False
    )
    assert consensus.metric == "top_consensus"
    assert set(consensus.leaderboard["trial"]) == set(board["trial"])


@pytest.mark.slow
def test_time_budget_keeps_finished_trials_and_cancels_the_rest(client, labelled):
    # Fast PCA trials and slow forests alternate; the budget ends while forests run.
    space = {"pca": None, "isolation_forest": {"n_estimators": [800, 1000], "max_samples": [256]}}
    started = time.monotonic()
    result = adp.search(
        labelled,
        space,
        label="label",
        max_trials=8,
        cv=3,
        time_budget=2.0,
        random_state=0,
        refit=False,
    )
    elapsed = time.monotonic() - started
    assert result.engine == "futures" and result.budget_exhausted
    counts = result.leaderboard["status"].value_counts().to_dict()
    assert counts.get("ok", 0) >= 1 and counts.get("cancelled", 0) >= 1
    assert set(counts) <= {"ok", "cancelled"}
    cancelled = result.leaderboard[result.leaderboard["status"] == "cancelled"]
    assert cancelled["error"].str.contains("time budget").all()
    assert result.elapsed_seconds < 2.0 + 1.0 and elapsed < 2.0 + 2.0
    assert result.best_detector is not None


def test_the_sample_is_placed_on_every_worker_once(client, labelled):
    from adp.tuning.engines import place_sample
    from adp.tuning.space import Candidate
    from adp.tuning.trials import run_trial

    data, size, total = place_sample(client, labelled, ["f0", "f1"], "label", 1000, 0)
    try:
        assert (size, total) == (1000, 3000)
        workers = set(client.scheduler_info(n_workers=-1)["workers"])
        assert set(client.who_has([data])[data.key]) == workers
        trial = client.submit(
            run_trial, data, Candidate(0, "pca", {}), "roc_auc", 2, 0, 0.1, pure=False
        )

        assert trial.result().status == "ok"

        def dependencies(dask_scheduler, key):
            return [d.key for d in dask_scheduler.tasks[key].dependencies]

        assert client.run_on_scheduler(dependencies, key=trial.key) == [data.key]
    finally:
        data.release()


def test_bad_requests_fail_before_any_trial(client, labelled):
    with pytest.raises(DataError, match="label column 'y' is not in the data"):
        adp.search(labelled, "pca", label="y")
    with pytest.raises(ConfigError, match="metric 'f1' needs labels"):
        adp.search(labelled.drop(columns="label"), "pca", metric="f1")
    with pytest.raises(ConfigError, match="not a labelled metric"):
        adp.search(labelled, "pca", label="label", metric="top_consensus")
    with pytest.raises(ConfigError, match="without a time_budget"):
        adp.search(labelled, "pca", label="label", time_budget=5, engine="dask-ml")
    frame = labelled.compute()
    frame["label"] = 0
    frame.iloc[:2, frame.columns.get_loc("label")] = 1
    few = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(DataError, match="fewer than cv=3 folds need"):
        adp.search(few, "pca", label="label", cv=3, random_state=0)


@pytest.mark.slow
def test_adp_search_is_the_function_whichever_import_came_first():
    # The engine lives in adp.tuning, so importing it first cannot rebind adp.search.
    code = (
        "import adp.tuning.space, adp\n"
        "print(type(adp.search).__name__)\n"
        "try:\n"
        "    adp.search(None, metric='silhouette')\n"
        "except adp.errors.ConfigError as exc:\n"
        "    print('forwarded:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kind, forwarded = out.stdout.splitlines()[:2]
    assert kind == "function"
    assert forwarded.startswith("forwarded: unknown unsupervised criterion 'silhouette'")

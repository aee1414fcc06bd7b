"""Ensembles: members by name, dict or Detector; every combination; one pass over the data."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.metrics import roc_auc_score

import adp
from adp.detect.combine import COMBINATIONS
from adp.detect.ensemble import EnsembleDetector
from adp.detect.threshold import FixedScore
from adp.errors import DetectorError


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2500, 4))
    labels = np.zeros(len(X), dtype=int)
    X[:40] += rng.choice([-7, 7], size=(40, 4))
    labels[:40] = 1
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), labels


MEMBERS = [
    "ecod",
    {"name": "knn", "params": {"n_neighbors": 8}},
    adp.create_detector("iforest", n_estimators=30, random_state=1),
]


def _manual(det: EnsembleDetector, X: np.ndarray) -> np.ndarray:
    scorer = det.scorer_
    columns = []
    for member, stats in zip(scorer.scorers, scorer.stats, strict=True):
        raw = member.decision_function(X)
        if det.combination == "vote":
            columns.append((raw >= stats.vote_threshold).astype(float))
        elif det.normalization == "zscore":
            columns.append((raw - stats.mean) / stats.std)
        else:
            ranks = np.searchsorted(stats.sorted_scores, raw, side="right")
            columns.append(ranks / stats.sorted_scores.size)
    M = np.column_stack(columns)
    groups = scorer.groups_
    return {
        "average": M.mean(1),
        "vote": M.mean(1),
        "max": M.max(1),
        "median": np.median(M, 1),
        "aom": np.mean([M[:, g].max(1) for g in groups], 0),
        "moa": np.max([M[:, g].mean(1) for g in groups], 0),
    }[det.combination]


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_every_combination_on_the_cluster(client: Client, data, combination: str) -> None:
    df, labels = data
    ddf = dd.from_pandas(df, npartitions=5)
    normalization = "rank" if combination == "median" else "zscore"
    det = adp.create_detector(
        "ensemble",
        detectors=MEMBERS,
        combination=combination,
        normalization=normalization,
        n_buckets=2,
        contamination=0.02,
    ).fit(ddf)
    assert [m.name for m in det.members] == ["ecod", "knn", "isolation_forest"]
    out = det.detect(ddf).compute().sort_index()
    np.testing.assert_allclose(out["score"], _manual(det, df.to_numpy()), rtol=1e-10)
    assert roc_auc_score(labels, out["score"]) > 0.95
    if combination == "vote":
        assert set(np.unique(out["score"])) <= {0, 1 / 3, 2 / 3, 1}
        assert isinstance(det.threshold_rule(None), FixedScore)  # majority of members
        assert out["is_anomaly"].equals(out["score"] >= 0.5)
    else:
        assert out["is_anomaly"].sum() == pytest.approx(0.02 * len(df), abs=1)


def test_all_members_are_scored_in_one_task_per_partition(client: Client, data) -> None:
    df, _ = data
    ddf = dd.from_pandas(df, npartitions=4)
    single = adp.create_detector("ecod").fit(ddf)
    ensemble = adp.create_detector("ensemble", detectors=["ecod", "hbos", "pca"]).fit(ddf)
    graph_single = dict(single.decision_function(ddf).__dask_graph__())
    graph_ensemble = dict(ensemble.decision_function(ddf).__dask_graph__())
    assert len(graph_ensemble) == len(graph_single)  # members add no task
    assert ensemble.n_models_ == 3


def test_bad_ensembles_are_refused() -> None:
    with pytest.raises(DetectorError, match="valid: average, max"):
        adp.create_detector("ensemble", detectors=["ecod"], combination="mean")
    with pytest.raises(DetectorError, match="non-empty list"):
        adp.create_detector("ensemble", detectors=[])
    with pytest.raises(DetectorError, match="member 1"):
        adp.create_detector("ensemble", detectors=["ecod", {"params": {}}])
    with pytest.raises(DetectorError, match="unknown detector"):
        adp.create_detector("ensemble", detectors=["ecod", "nope"])
    with pytest.raises(DetectorError, match="supports sample"):
        ens = adp.create_detector("ensemble", detectors=["ecod"])
        ens.fit(dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0]}), npartitions=1), strategy="bagging")


def test_params_rebuild_the_same_ensemble() -> None:
    ens = adp.create_detector(
        "ensemble",
        detectors=["ecod", adp.create_detector("iforest", random_state=3, contamination=0.05)],
        combination="moa",
        normalization="rank",
    )
    params = ens.params  # plain data (get_params keeps the members as given, for clone)
    assert params["detectors"][1] == {
        "name": "isolation_forest",
        "params": {"contamination": 0.05, "random_state": 3},
    }
    again = adp.create_detector("ensemble", **params)
    assert again.params == params
    assert [m.contamination for m in again.members] == [0.1, 0.05]

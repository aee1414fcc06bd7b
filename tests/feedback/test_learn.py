"""Learning from labels: each method makes a registered version with lineage that scores
partition-parallel and partition-invariant, like any detector."""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from adp.detect.threshold import Contamination, FixedScore
from adp.errors import ConfigError, DataError, DetectorError, NotFittedError
from adp.feedback import (
    RecalibratedDetector,
    SemiSupervisedDetector,
    WeightedEnsembleDetector,
    learn,
    with_labels,
)
from adp.feedback.labels import label_set_sha256
from adp.feedback.learners import precision_threshold

FEATURES = ["f0", "f1", "f2", "f3"]


def _answer(store: Any, keyed: pd.DataFrame, ids: Any, model: str = "demo@1") -> None:
    truth = keyed.set_index("id")["label"]
    store.add_many(
        model,
        [({"id": int(i)}, "anomaly" if truth[i] else "normal") for i in ids],
        who="alice",
    )


@pytest.fixture
def registered(registry: Any, ensemble: Any) -> Any:
    return registry.register(ensemble, "demo")


@pytest.fixture
def labelled_store(sqlite_store: Any, keyed: pd.DataFrame) -> Any:
    """60 rows answered: every anomaly among the first 600 ids and some normal rows."""
    ids = keyed["id"].to_numpy()[:600]
    picked = list(ids[keyed["label"].to_numpy()[:600] == 1]) + list(ids[:40])
    _answer(sqlite_store, keyed, dict.fromkeys(picked))
    sqlite_store.add("demo@1", {"id": int(ids[599])}, "unsure", who="bob")  # never a target
    return sqlite_store


def test_with_labels_matches_labels_by_key_on_the_workers(
    keyed_ddf: dd.DataFrame, labelled_store: Any, keyed: pd.DataFrame
) -> None:
    frame = with_labels(keyed_ddf, labelled_store.labels("demo")).compute()
    answered = frame.dropna(subset=["label"])
    truth = keyed.set_index("id")["label"]
    assert (answered["label"].to_numpy() == truth.loc[answered["id"]].to_numpy()).all()
    assert len(answered) == sum(1 for lab in labelled_store.labels("demo") if lab.label != "unsure")
    with pytest.raises(DataError, match="lacks the key columns"):
        with_labels(keyed_ddf.drop(columns="id"), labelled_store.labels("demo"))


@pytest.mark.slow
def test_each_method_registers_a_version_with_lineage(
    registry: Any, registered: Any, labelled_store: Any, keyed_ddf: dd.DataFrame
) -> None:
    used = [lab for lab in labelled_store.labels("demo") if lab.label != "unsure"]
    results = {
        method: learn(
            "demo@1", keyed_ddf, method, store=labelled_store, registry=registry, **params
        )
        for method, params in [
            ("threshold", {"target_precision": 0.8}),
            ("semi_supervised", {"random_state": 0}),
            ("ensemble_weights", {}),
        ]
    }
    versions = [r.version for r in results.values()]
    assert [v.ref for v in versions] == ["demo@2", "demo@3", "demo@4"]
    assert {v.parent for v in versions} == {"demo@1"}
    assert {v.label_sha256 for v in versions} == {label_set_sha256(used)}
    assert [v.method for v in versions] == ["threshold", "semi_supervised", "ensemble_weights"]
    assert registry.info("demo", 3).params["base"]["name"] == "ensemble"
    counts = results["semi_supervised"].counts
    assert counts["anomalies"] + counts["normals"] == len(used) and counts["unmatched"] == 0

    # Loaded back from the registry, each scores every partition the same way however the
    # rows are partitioned, and flags by its learned rule.
    frame = keyed_ddf.compute()
    for version in versions:
        loaded = registry.get(version.name, version.version)
        four = loaded.decision_function(keyed_ddf).compute().sort_index()
        seven = loaded.decision_function(dd.from_pandas(frame, npartitions=7)).compute()
        assert np.allclose(four.to_numpy(), seven.sort_index().to_numpy())
        assert np.isfinite(four.to_numpy()).all()
    recalibrated = registry.get("demo", 2)
    assert isinstance(recalibrated.threshold_rule(), FixedScore)
    assert recalibrated.threshold_rule(None).value == results["threshold"].detector.threshold_
    semi = registry.get("demo", 3)
    assert semi.threshold_rule() == FixedScore(0.0)  # the classifier's boundary
    assert isinstance(registry.get("demo", 4).threshold_rule(), Contamination)
    flagged = semi.detect(keyed_ddf, key=["id"], explain=1).compute()
    assert (
        flagged["is_anomaly"].any()
        and flagged.loc[flagged.is_anomaly, "top_features"].notna().all()
    )


def test_the_semi_supervised_scorer_learns_what_the_detectors_miss(
    client: Any, ensemble: Any, keyed: pd.DataFrame, keyed_ddf: dd.DataFrame
) -> None:
    # The "anomalies" here are ordinary-looking rows the analysts know to be bad: f2 in a
    # narrow band. No unsupervised detector can find them; 150 labels teach the classifier.
    frame = keyed.drop(columns="label")
    target = ((frame["f2"] > 0.3) & (frame["f2"] < 0.8)).astype(int).to_numpy()
    rng = np.random.default_rng(0)
    shown = rng.choice(len(frame), size=150, replace=False)
    y = np.full(len(frame), np.nan)
    y[shown] = target[shown]
    ddf = dd.from_pandas(frame.assign(label=y), npartitions=4)
    learned = SemiSupervisedDetector(ensemble, random_state=0).fit(ddf)
    rest = np.setdiff1d(np.arange(len(frame)), shown)
    before = ensemble.decision_function(keyed_ddf).compute().sort_index().to_numpy()
    after = learned.decision_function(keyed_ddf).compute().sort_index().to_numpy()
    ap_before = average_precision_score(target[rest], before[rest])
    ap_after = average_precision_score(target[rest], after[rest])
    assert ap_after > ap_before + 0.3
    assert learned.n_anomalies_ == int(target[shown].sum())
    assert learned.n_normals_ == 150 - learned.n_anomalies_


def test_threshold_recalibration_reaches_the_target_on_the_labels() -> None:
    scores = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0])
    truth = np.array([1, 1, 0, 1, 1, 0, 0, 0])
    # precision at each cut: 1, 1, .67, .75, .8, .67, .57, .5
    assert precision_threshold(scores, truth, 0.8, min_anomalies=1) == 5.0
    assert precision_threshold(scores, truth, 0.9, min_anomalies=1) == 8.0
    with pytest.raises(DetectorError, match="best is 1.000"):
        precision_threshold(scores, truth, 0.9, min_anomalies=3)
    tied = np.array([5.0, 5.0, 4.0])  # no cut between tied scores
    assert precision_threshold(tied, np.array([1, 0, 0]), 0.5) == 5.0


def test_learning_refuses_what_it_cannot_learn_from(
    client: Any, ensemble: Any, keyed: pd.DataFrame, fitted_hbos: Any
) -> None:
    import adp

    frame = keyed.drop(columns="label").assign(
        label=np.where(np.arange(len(keyed)) < 30, 0.0, np.nan)
    )
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(DetectorError, match="0 anomalies and 30 normal rows"):
        SemiSupervisedDetector(ensemble).fit(ddf)
    with pytest.raises(DataError, match="label column 'truth'"):
        SemiSupervisedDetector(ensemble).fit(ddf, label="truth")
    with pytest.raises(NotFittedError, match="not fitted"):
        SemiSupervisedDetector(adp.create_detector("hbos")).fit(ddf)
    with pytest.raises(DetectorError, match="need an ensemble"):
        WeightedEnsembleDetector(fitted_hbos).fit(ddf)
    with pytest.raises(DetectorError, match="target_precision"):
        RecalibratedDetector(ensemble, target_precision=1.5).fit(ddf)
    with pytest.raises(DetectorError, match="flag_by"):
        SemiSupervisedDetector(ensemble, flag_by="vote").fit(ddf)


def test_learned_detectors_follow_the_estimator_contract(ensemble: Any) -> None:
    from sklearn.base import clone

    detector = SemiSupervisedDetector(ensemble, max_iter=30)
    assert detector.get_params()["max_iter"] == 30
    assert detector.set_params(max_iter=40).max_iter == 40
    copy = clone(detector)
    assert copy.base is ensemble and copy.max_iter == 40 and not copy.is_fitted
    assert detector.params["base"]["name"] == "ensemble"
    with pytest.raises(DetectorError, match="unknown parameters"):
        detector.set_params(depth=3)


def test_learn_names_unknown_methods_and_parameters(
    registry: Any, registered: Any, labelled_store: Any, keyed_ddf: dd.DataFrame
) -> None:
    with pytest.raises(ConfigError, match="unknown learning method"):
        learn("demo@1", keyed_ddf, "magic", store=labelled_store, registry=registry)
    with pytest.raises(ConfigError, match="invalid parameters for method 'threshold'"):
        learn("demo@1", keyed_ddf, "threshold", store=labelled_store, registry=registry, depth=2)

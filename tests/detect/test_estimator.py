"""The estimator contract: parameters only in ``__init__``, get_params / set_params / clone
over the whole catalogue, fitted state (missing-value policy and medians included) that
pickles, the public verbs, and the one score path with a custom stage."""

from __future__ import annotations

import pickle
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from adp.detect.base import FITTED_ATTRIBUTES, BaseDetector
from adp.detect.detection import Detection, InMemoryStage, run_detection
from adp.detect.detector import Detector, EnsembleDetector, create_detector
from adp.detect.registry import DetectorInfo, all_detectors
from adp.errors import ConfigError, DataError, DetectorError, NotFittedError

# Small settings so that the slow detectors (torch, quadratic fits) stay cheap here.
FAST: dict[str, dict[str, Any]] = {
    "lunar": {"n_epochs": 3},
    "autoencoder": {"epoch_num": 2},
    "deep_svdd": {"epochs": 2},
    "feature_bagging": {"n_estimators": 3},
    "isolation_forest": {"n_estimators": 20},
    "sklearn_isolation_forest": {"n_estimators": 20},
    "inne": {"n_estimators": 20},
}
CATALOGUE = all_detectors()


def _frame(n: int = 400, d: int = 4, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{j}" for j in range(d)])
    df.iloc[: n // 40, 0] += 6
    return df


def _skip_unavailable(info: DetectorInfo) -> None:
    if not info.is_available():
        pytest.skip(f"{info.name} is not installed here: {info.install_hint()}")


def _ensemble() -> EnsembleDetector:
    member = create_detector("iforest", n_estimators=20, random_state=1)
    return EnsembleDetector(["ecod", {"name": "hbos", "params": {"n_bins": 8}}, member])


def _fit_sync(det: BaseDetector, df: pd.DataFrame, **kwargs: Any) -> BaseDetector:
    with dask.config.set(scheduler="sync"):
        return det.fit(dd.from_pandas(df, npartitions=3), **kwargs)


def _never_compute(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("dask computed something while the graph was being built")


# -- parameters ----------------------------------------------------------------------------


def test_init_stores_parameters_as_given_and_checks_nothing() -> None:
    det = Detector("IForest", contamination=0.9, n_trees=3)  # all wrong, none checked yet
    assert det.get_params() == {"name": "IForest", "contamination": 0.9, "n_trees": 3}
    assert not det.is_fitted
    with pytest.raises(DetectorError, match="valid parameters: .*n_estimators"):
        det.fit(dd.from_pandas(_frame(50), npartitions=1))
    det.set_params(name="iforest", contamination=0.05)
    with pytest.raises(DetectorError, match="n_trees"):
        det.fit(dd.from_pandas(_frame(50), npartitions=1))
    ens = EnsembleDetector(["nope"], combination="mean")
    assert ens.get_params()["detectors"] == ["nope"]
    with pytest.raises(DetectorError, match="valid: average, max"):
        ens.fit(dd.from_pandas(_frame(50), npartitions=1))


def test_create_detector_fails_at_once_with_the_valid_choices() -> None:
    with pytest.raises(DetectorError, match="valid names: .*isolation_forest"):
        create_detector("forest_of_doom")
    with pytest.raises(DetectorError, match="valid parameters: .*combination"):
        create_detector("ensemble", detectors=["ecod"], combine="max")
    with pytest.raises(DetectorError, match="detectors is required"):
        create_detector("ensemble")
    with pytest.raises(DetectorError, match=r"^contamination must be"):
        create_detector("ensemble", detectors=["ecod"], contamination=2)
    assert create_detector("IFOREST").get_params()["name"] == "isolation_forest"


@pytest.mark.parametrize("info", CATALOGUE, ids=lambda i: i.name)
def test_get_params_set_params_and_clone_over_the_catalogue(info: DetectorInfo) -> None:
    _skip_unavailable(info)
    det = create_detector(info.name, contamination=0.05, **FAST.get(info.name, {}))
    params = det.get_params()
    assert params["name"] == info.name and params["contamination"] == 0.05

    copy = clone(det)
    assert type(copy) is Detector and copy is not det
    assert copy.get_params() == params
    assert copy.params is not det.params  # a change to the clone does not leak back

    # set_params round-trip: every parameter back as it was, and returns self
    assert det.set_params(**params) is det and det.get_params() == params
    settable = [p for p in info.valid_params() if p != "contamination"]
    if settable:
        det.set_params(**{settable[0]: "sentinel"}, contamination="auto")
        assert det.get_params()[settable[0]] == "sentinel"
        assert det.get_params()["contamination"] == "auto"
        assert copy.get_params() == params
    with pytest.raises(DetectorError, match="valid parameters: name, contamination") as err:
        det.set_params(no_such_parameter=1)
    assert "no_such_parameter" in str(err.value)
    with pytest.raises(DetectorError, match="unknown detector"):
        det.set_params(name="no_such_detector")


def test_ensemble_params_clone_and_set_params() -> None:
    ens = _ensemble()
    params = ens.get_params()
    assert set(params) == {
        "detectors",
        "combination",
        "normalization",
        "contamination",
        "n_buckets",
        "random_state",
    }
    copy = clone(ens)
    assert type(copy) is EnsembleDetector
    assert copy.get_params()["detectors"][:2] == params["detectors"][:2]
    member, copied = params["detectors"][2], copy.get_params()["detectors"][2]
    assert copied is not member and copied.get_params() == member.get_params()
    assert ens.set_params(combination="max", contamination=0.2) is ens
    assert (ens.combination, ens.contamination) == ("max", 0.2)
    with pytest.raises(DetectorError, match="valid parameters: detectors, combination"):
        ens.set_params(members=[])
    # plain-data parameters rebuild the same ensemble
    again = create_detector("ensemble", contamination=0.2, **ens.params)
    assert again.params == ens.params
    assert [m.name for m in again.members] == ["ecod", "hbos", "isolation_forest"]


@pytest.mark.slow
@pytest.mark.parametrize("info", CATALOGUE, ids=lambda i: i.name)
def test_clone_of_a_fitted_detector_is_unfitted(info: DetectorInfo) -> None:
    _skip_unavailable(info)
    d = 1 if info.name == "mad" else 4
    params = dict(FAST.get(info.name, {}))
    if "random_state" in info.valid_params():
        params["random_state"] = 0
    det = _fit_sync(create_detector(info.name, **params), _frame(240, d))
    assert all(hasattr(det, name) for name in FITTED_ATTRIBUTES)
    copy = clone(det)
    assert copy.get_params() == det.get_params()
    assert not copy.is_fitted
    assert not [name for name in vars(copy) if name.endswith("_")]
    with pytest.raises(NotFittedError, match="fit"):
        copy.decision_function(dd.from_pandas(_frame(20, d), npartitions=1))


def test_clone_of_a_fitted_ensemble_is_unfitted() -> None:
    ens = _fit_sync(_ensemble(), _frame())
    assert ens.is_fitted and ens.n_models_ == 3 and len(ens.members_) == 3
    copy = clone(ens)
    assert not copy.is_fitted and not hasattr(copy, "members_")
    assert not copy.get_params()["detectors"][2].is_fitted


# -- fitted state --------------------------------------------------------------------------


def _with_holes(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    holes = df.copy()
    rng = np.random.default_rng(seed)
    for column in holes.columns:
        holes.loc[rng.choice(len(holes), size=len(holes) // 10, replace=False), column] = np.nan
    return holes


def test_fitted_state_round_trips_through_pickle_with_the_missing_policy() -> None:
    train = _with_holes(_frame(600), seed=1)
    det = _fit_sync(create_detector("hbos"), train, missing="impute_median")
    assert det.missing_ == "impute_median"
    assert set(det.medians_) == set(det.features_) == {"f0", "f1", "f2", "f3"}
    restored = pickle.loads(pickle.dumps(det))
    for name in FITTED_ATTRIBUTES:
        if name not in ("scorer_", "reference_"):
            assert getattr(restored, name) == getattr(det, name), name
    np.testing.assert_array_equal(restored.reference_, det.reference_)
    new = dd.from_pandas(_with_holes(_frame(300, seed=5), seed=2), npartitions=2)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(
            restored.decision_function(new).compute(), det.decision_function(new).compute()
        )

    dropper = _fit_sync(create_detector("hbos"), train, missing="drop")
    assert (dropper.missing_, dropper.medians_) == ("drop", None)
    assert dropper.n_rows_seen_ == int(train.notna().all(axis=1).sum())
    again = pickle.loads(pickle.dumps(dropper))
    with dask.config.set(scheduler="sync"):
        scores = again.decision_function(new).compute()
    assert len(scores) == int(new.compute().notna().all(axis=1).sum())  # rows with holes left out


def test_scoring_imputes_with_the_fit_time_medians_not_the_scored_datas() -> None:
    train = _with_holes(_frame(800), seed=3)
    det = _fit_sync(create_detector("ecod"), train, missing="impute_median")
    medians = det.medians_
    # new data on a shifted scale: its own medians are far from the fitted ones
    new = _frame(200, seed=7) + 50.0
    new.iloc[0] = np.nan  # a row of holes ...
    new.iloc[1] = [medians[c] for c in new.columns]  # ... and a row of the fit medians
    new.iloc[2, 1] = np.nan  # one hole: the fitted median of f1 goes there
    expected_row = new.iloc[2].copy()
    expected_row["f1"] = medians["f1"]
    with dask.config.set(scheduler=_never_compute):
        scores = det.decision_function(dd.from_pandas(new, npartitions=3))  # nothing computed
    with dask.config.set(scheduler="sync"):
        got = scores.compute()
    assert got.iloc[0] == got.iloc[1]
    direct = det.scorer_.decision_function(expected_row.to_numpy()[None, :])[0]
    assert got.iloc[2] == pytest.approx(direct, rel=1e-12)
    assert got.iloc[0] < got.iloc[3:].min()  # the scored data's medians would be ~50


def test_detectors_pickled_before_the_estimator_contract_still_load() -> None:
    ens = _fit_sync(_ensemble(), _frame())
    old = dict(vars(ens))  # as the old class kept it: members and params, no detectors
    old["members"], old["params"], old["info"] = old.pop("members_"), ens.params, None
    del old["detectors"], old["missing_"], old["medians_"]
    restored = EnsembleDetector.__new__(EnsembleDetector)
    restored.__setstate__(old)
    assert restored.get_params()["detectors"] == ens.params["detectors"]
    assert (restored.missing_, restored.medians_) == ("fail", None)
    assert [m.name for m in restored.members] == ["ecod", "hbos", "isolation_forest"]
    new = dd.from_pandas(_frame(100, seed=3), npartitions=2)
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(
            restored.decision_function(new).compute(), ens.decision_function(new).compute()
        )


def test_the_missing_policy_fails_naming_the_partition_and_is_checked() -> None:
    with pytest.raises(ConfigError, match="missing policy 'skip'"):
        _fit_sync(create_detector("hbos"), _frame(), missing="skip")  # type: ignore[arg-type]
    train = _with_holes(_frame(300), seed=4)
    with pytest.raises(DataError, match=r"partition \d: missing or non-finite"):
        _fit_sync(create_detector("hbos"), train)  # the default policy is "fail"


# -- the verbs -----------------------------------------------------------------------------


def test_decision_function_predict_and_detect(client) -> None:
    df = _frame(1000)
    df["row_id"] = np.arange(len(df))
    ddf = dd.from_pandas(df, npartitions=4)
    det = create_detector("iforest", contamination=0.05, random_state=0).fit(
        ddf, exclude=["row_id"]
    )
    scores = det.decision_function(ddf)
    labels = det.predict(ddf)
    frame = det.detect(ddf, key=["row_id"])
    assert isinstance(scores, dd.Series) and scores.dtype == np.float64
    assert isinstance(labels, dd.Series) and labels.dtype == bool
    assert isinstance(frame, dd.DataFrame)
    assert list(frame.columns) == ["row_id", "score", "is_anomaly"]
    assert scores.npartitions == labels.npartitions == frame.npartitions == 4
    s, y, out = dask.compute(scores, labels, frame)
    assert s.dtype == np.float64 and y.dtype == bool
    pd.testing.assert_series_equal(s, out["score"])
    pd.testing.assert_series_equal(y, out["is_anomaly"])
    assert int(y.sum()) == 50  # the global contamination: 5% of all rows
    assert not hasattr(det, "score")  # the old verb is gone


def test_detect_builds_a_lazy_graph_and_explain_zero_adds_nothing() -> None:
    det = _fit_sync(create_detector("ecod", contamination=0.1), _frame())
    ddf = dd.from_pandas(_frame(300, seed=2), npartitions=3)
    with dask.config.set(scheduler=_never_compute):
        frame = det.detect(ddf, explain=0)
        explained = det.detect(ddf, explain=2)
        labels = det.predict(ddf)
    assert list(frame.columns) == ["score", "is_anomaly"]
    assert list(explained.columns) == ["score", "is_anomaly", "top_features"]
    with dask.config.set(scheduler="sync"):
        assert int(labels.sum().compute()) == 30
    with pytest.raises(DetectorError, match="explain"):
        det.detect(ddf, explain=-1)


class _EagerStage(InMemoryStage):
    """A job-like stage: raw scores persisted, each threshold pass computed at once."""

    def __init__(self) -> None:
        self.passes = 0
        self.staged: list[dd.DataFrame] = []
        self.step = self._compute

    def _compute(self, value: Any) -> Any:
        self.passes += 1
        return dask.compute(value)[0]

    def stage(self, raw: dd.DataFrame) -> dd.DataFrame:
        staged = raw.persist()
        self.staged.append(staged)
        return staged

    def staged_scores(self, staged: dd.DataFrame) -> dd.Series:
        return staged["score"].repartition(npartitions=2)  # regrouped, as a job may


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [None, "auto", 0.7])
def test_run_detection_with_a_custom_stage_gives_the_in_memory_threshold(client, threshold) -> None:
    df = _frame(1200, seed=8)
    ddf = dd.from_pandas(df, npartitions=5)
    det = create_detector("hbos", contamination=0.03).fit(ddf)
    memory = run_detection(det, ddf, threshold=threshold)
    assert isinstance(memory, Detection) and not isinstance(memory.threshold, float)
    stage = _EagerStage()
    eager = run_detection(det, ddf, threshold=threshold, stage=stage, explain=1)
    assert isinstance(eager.threshold, float)
    assert eager.threshold == float(dask.compute(memory.threshold)[0])
    assert stage.passes >= 1 and len(stage.staged) == 1
    a, b = dask.compute(memory.frame, eager.frame)
    pd.testing.assert_series_equal(a["is_anomaly"], b["is_anomaly"])
    assert b["top_features"].notna().sum() == b["is_anomaly"].sum()

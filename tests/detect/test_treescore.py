"""The compiled isolation-forest scorer gives scikit-learn's (and PyOD's) scores."""

from __future__ import annotations

import pickle

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from pyod.models.iforest import IForest
from sklearn.ensemble import IsolationForest

import adp
from adp.detect import forest
from adp.detect.forest import ForestScorer
from adp.detect.registry import detector_info
from adp.detect.treescore import (
    MAX_DEPTH,
    CompiledForest,
    NonFiniteInput,
    UnsupportedForest,
)


def _assert_same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == np.float64
    assert np.max(np.abs(a - b), initial=0.0) <= 1e-9


def _check(fitted: IsolationForest, X: np.ndarray) -> CompiledForest:
    compiled = CompiledForest.from_forest(fitted)
    _assert_same(compiled.score_samples(X), fitted.score_samples(X))
    return compiled


def _normal(n: int, d: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def _nodes(fitted: IsolationForest) -> list[tuple[int, float]]:
    """(column of X, threshold) of every split of every tree."""
    out = []
    for tree, columns in zip(fitted.estimators_, fitted.estimators_features_, strict=True):
        t = tree.tree_
        for node in np.flatnonzero(t.children_left != -1):
            column = t.feature[node]
            if fitted._max_features != fitted.n_features_in_:
                column = columns[column]
            out.append((int(column), float(t.threshold[node])))
    return out


def _rows_at_thresholds(fitted: IsolationForest, X: np.ndarray, nudge: float = 0.0):
    """Rows of ``X`` with one column set to a split's threshold (times ``1 + nudge``)."""
    nodes = _nodes(fitted)
    rows = X[np.arange(len(nodes)) % len(X)].copy()
    for r, (column, threshold) in enumerate(nodes):
        rows[r, column] = threshold * (1.0 + nudge) if threshold else nudge
    return rows


def test_random_data_and_the_forest_is_plain_numpy() -> None:
    fitted = IsolationForest(n_estimators=40, random_state=0).fit(_normal(2000, 6))
    X = _normal(3000, 6, seed=1) * 1.5
    compiled = _check(fitted, X)
    assert compiled.depth == 8 and compiled.features.shape == (40, 255)
    assert compiled.leaves.shape == (40, 256)
    _assert_same(compiled.score_samples(X.astype(np.float32)), fitted.score_samples(X))
    _assert_same(compiled.score_samples(X[:1]), fitted.score_samples(X[:1]))
    assert compiled.score_samples(X[:0]).shape == (0,)
    restored = pickle.loads(pickle.dumps(compiled))
    _assert_same(restored.score_samples(X), fitted.score_samples(X))
    with pytest.raises(ValueError, match="features"):
        compiled.score_samples(X[:, :5])


def test_integer_data_lands_exactly_on_thresholds() -> None:
    X = np.random.default_rng(2).integers(0, 6, size=(1500, 4)).astype(np.float64)
    fitted = IsolationForest(n_estimators=30, random_state=0).fit(X)
    for tree in fitted.estimators_:  # integer thresholds: many rows sit on them exactly
        split = tree.tree_.children_left != -1
        tree.tree_.threshold[split] = np.round(tree.tree_.threshold[split])
    on = np.isin(X, [t for _, t in _nodes(fitted)]).mean()
    assert on > 0.5
    _check(fitted, X)
    _check(fitted, _rows_at_thresholds(fitted, X))


def test_float64_values_rounding_to_a_float32_threshold() -> None:
    X = _normal(1500, 5, seed=3)
    fitted = IsolationForest(n_estimators=30, random_state=0).fit(X)
    # thresholds as scikit-learn grows them are not float32 values: x rounded to float32
    # lands on either side of them
    _check(fitted, _rows_at_thresholds(fitted, X))
    for tree in fitted.estimators_:  # float32 thresholds: x within float32 rounding of one
        split = tree.tree_.children_left != -1
        tree.tree_.threshold[split] = tree.tree_.threshold[split].astype(np.float32)
    for nudge in (0.0, 1e-9, -1e-9, 1e-7, -1e-7):
        _check(fitted, _rows_at_thresholds(fitted, X, nudge))


@pytest.mark.parametrize(
    "params",
    [
        {"max_features": 0.5},
        {"max_features": 2},
        {"max_samples": 64},
        {"max_samples": 1000},
        {"bootstrap": True},
        {"max_samples": 1000, "max_features": 0.7, "bootstrap": True},
    ],
)
def test_forest_settings(params) -> None:
    fitted = IsolationForest(n_estimators=25, random_state=4, **params).fit(_normal(2000, 6))
    X = _normal(2000, 6, seed=5) * 2
    compiled = _check(fitted, X)
    expected_depth = int(np.ceil(np.log2(fitted._max_samples)))
    assert compiled.depth == max(t.tree_.max_depth for t in fitted.estimators_)
    assert compiled.depth <= expected_depth


def test_single_leaf_trees() -> None:
    for fitted in (
        IsolationForest(n_estimators=5, random_state=0).fit(np.ones((50, 3))),
        IsolationForest(n_estimators=5, max_samples=1, random_state=0).fit(_normal(50, 3)),
    ):
        assert _check(fitted, _normal(20, 3)).depth == 0


@pytest.mark.parametrize("pyod_scale", [True, False])
def test_merged_distributed_forest(pyod_scale) -> None:
    X = _normal(3000, 4, seed=6)
    parts = [X[:1000], X[1000:2200], X[2200:]]
    params = {"max_features": 0.75}
    grown = [
        forest.grow(p, n, 256, params, seed) for p, n, seed in zip(parts, (7, 7, 6), (1, 2, 3))
    ]
    merged = forest.merge(grown)
    forest.set_offset(merged, [merged.score_samples(p) for p in parts], 0.1)
    scorer = ForestScorer(merged, pyod_scale=pyod_scale)
    assert scorer.compiled is not None
    Y = _normal(2000, 4, seed=7)
    expected = -merged.decision_function(Y) if pyod_scale else -merged.score_samples(Y)
    _assert_same(scorer.decision_function(Y), expected)
    _assert_same(pickle.loads(pickle.dumps(scorer)).decision_function(Y), expected)
    plain = ForestScorer(merged, pyod_scale=pyod_scale, compiled=False)
    assert plain.compiled is None
    _assert_same(plain.decision_function(Y), expected)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
def test_non_finite_rows_fall_back_to_scikit_learn() -> None:
    fitted = IsolationForest(n_estimators=20, random_state=0).fit(_normal(1000, 3))
    X = _normal(50, 3, seed=8)
    X[3, 1] = np.nan
    X[7, 0] = np.inf
    X[9, 2] = 1e300  # finite, but infinite in float32
    for bad in (3, 7, 9):
        with pytest.raises(NonFiniteInput):
            CompiledForest.from_forest(fitted).score_samples(X[bad : bad + 1])
    scorer = ForestScorer(fitted, pyod_scale=False)
    assert scorer.compiled is not None
    _assert_same(scorer.decision_function(X), -fitted.score_samples(X))
    frame = pd.DataFrame(X[:3], columns=["a", "b", "c"])  # not an ndarray: scikit-learn
    _assert_same(scorer.decision_function(frame), -fitted.score_samples(X[:3]))


def test_too_deep_or_unusual_forests_fall_back_to_scikit_learn() -> None:
    X = _normal(40_000, 2, seed=9)
    deep = IsolationForest(n_estimators=2, max_samples=40_000, random_state=0).fit(X)
    assert max(t.tree_.max_depth for t in deep.estimators_) > MAX_DEPTH
    with pytest.raises(UnsupportedForest, match="depth"):
        CompiledForest.from_forest(deep)
    scorer = ForestScorer(deep, pyod_scale=False)
    assert scorer.compiled is None
    _assert_same(scorer.decision_function(X[:100]), -deep.score_samples(X[:100]))

    shallow = IsolationForest(n_estimators=5, random_state=0).fit(X[:500])
    with pytest.raises(UnsupportedForest, match="depth"):
        CompiledForest.from_forest(shallow, max_depth=3)

    class Custom(IsolationForest):
        pass

    custom = Custom(n_estimators=5, random_state=0).fit(X[:500])
    with pytest.raises(UnsupportedForest):
        CompiledForest.from_forest(custom)
    assert ForestScorer(custom, pyod_scale=True).compiled is None
    with pytest.raises(UnsupportedForest):
        CompiledForest.from_forest(IsolationForest())


def test_registry_scorer_equals_pyod_decision_function() -> None:
    X, Y = _normal(1500, 5, seed=10), _normal(1000, 5, seed=11) * 2
    info = detector_info("isolation_forest")
    estimator = info.build({"random_state": 0}, contamination=0.1)
    estimator.fit(X)
    scorer = info.scorer(estimator, X)
    assert isinstance(scorer, ForestScorer) and scorer.compiled is not None
    _assert_same(scorer.decision_function(Y), estimator.decision_function(Y))

    sk_info = detector_info("sklearn_isolation_forest")
    sk = sk_info.build({"random_state": 0}, contamination=0.1).fit(X)
    _assert_same(sk_info.scorer(sk, X).decision_function(Y), -sk.score_samples(Y))


def test_fitted_detector_scores_as_pyod(client: Client) -> None:
    X = _normal(1200, 4, seed=12)
    df = pd.DataFrame(X, columns=[f"f{j}" for j in range(4)])
    ddf = dd.from_pandas(df, npartitions=3)
    det = adp.create_detector("isolation_forest", n_estimators=30, random_state=0).fit(ddf)
    assert det.scorer_.compiled is not None
    pyod = IForest(n_estimators=30, random_state=0, n_jobs=1).fit(X)
    scores = det.decision_function(ddf).compute().sort_index().to_numpy()
    _assert_same(scores, pyod.decision_function(X))


@pytest.mark.parametrize(
    "params",
    [
        {"random_state": 0},
        {"random_state": 1, "contamination": 0.03, "max_samples": 100, "max_features": 0.5},
        {"random_state": 2, "bootstrap": True, "n_estimators": 30},
    ],
)
def test_fast_pyod_fit_equals_pyods_own_fit(params) -> None:
    from pyod.models.iforest import IForest

    from adp.detect.forest import fit_pyod_iforest

    X = np.random.default_rng(5).normal(size=(3000, 6))
    expected = IForest(**params).fit(X)
    got = fit_pyod_iforest(IForest(**params), X)
    assert got.detector_.offset_ == expected.detector_.offset_
    np.testing.assert_array_equal(got.decision_scores_, expected.decision_scores_)
    assert got.threshold_ == expected.threshold_
    np.testing.assert_array_equal(got.labels_, expected.labels_)
    np.testing.assert_array_equal(
        got.decision_function(X[:200]), expected.decision_function(X[:200])
    )

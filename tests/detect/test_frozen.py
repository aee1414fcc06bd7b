"""ADP's frozen versions of PyOD's batch-dependent detectors (COF, SOD, ROD): PyOD's training
scores where the definition allows, and scores of new rows that ignore the batch."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyod.models.cof import COF as PyODCOF
from pyod.models.rod import ROD

from adp.detect.neighbors import COF, SOD
from adp.detect.rod import FrozenRodScorer


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(260, 5))
    X[:8] += 4
    return X, rng.normal(size=(90, 5))


def _batched(score, X: np.ndarray, size: int) -> np.ndarray:
    return np.concatenate([score(X[i : i + size]) for i in range(0, len(X), size)])


@pytest.mark.slow
def test_pyod_cof_and_rod_depend_on_the_batch(data) -> None:
    """The reason ADP freezes them: PyOD scores the same rows differently in batches."""
    X, new = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rod = ROD().fit(X)
        assert not np.allclose(rod.decision_function(new), _batched(rod.decision_function, new, 30))
        cof = PyODCOF(n_neighbors=10).fit(X)
        assert not np.allclose(cof.decision_function(new), _batched(cof.decision_function, new, 30))


def test_cof_matches_pyod_on_training_rows_and_ignores_the_batch(data) -> None:
    X, new = data
    ours = COF(n_neighbors=10).fit(X)
    np.testing.assert_allclose(
        ours.decision_scores_, PyODCOF(n_neighbors=10).fit(X).decision_scores_
    )
    np.testing.assert_allclose(
        _batched(ours.decision_function, new, 7), ours.decision_function(new), rtol=1e-12
    )
    assert ours.decision_function(new[:1]).shape == (1,)  # PyOD's fails on tiny batches


def test_sod_finds_the_outliers_and_ignores_the_batch(data) -> None:
    X, new = data
    ours = SOD().fit(X)
    # (PyOD's SOD is not run here: its numba kernel takes ~30 s to compile. Its ties between
    # equal shared-neighbour counts are broken by an unstable sort, so scores differ anyway.)
    assert len(set(np.argsort(-ours.decision_scores_)[:8]) & set(range(8))) >= 5
    shifted = new.copy()
    shifted[:5] += 5
    scores = ours.decision_function(shifted)
    assert scores[:5].min() > np.median(scores[5:])
    np.testing.assert_allclose(_batched(ours.decision_function, shifted, 7), scores)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_rod_reproduces_pyod_training_scores_and_ignores_the_batch(data, d: int) -> None:
    X, new = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rod = ROD().fit(X[:, :d])
    scorer = FrozenRodScorer(rod, X[:, :d])
    np.testing.assert_allclose(scorer.decision_function(X[:, :d]), rod.decision_scores_, rtol=1e-12)
    np.testing.assert_allclose(
        _batched(scorer.decision_function, new[:, :d], 7),
        scorer.decision_function(new[:, :d]),
        rtol=1e-12,
    )

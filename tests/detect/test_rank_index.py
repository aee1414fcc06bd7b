"""Rank normalisation counts through the ECDF bucket index, exactly as ``searchsorted``."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from adp.detect.combine import EnsembleScorer, TrainingStats
from adp.detect.rank_index import RankIndex

RNG = np.random.default_rng(7)
TRAINING = {
    "normal": RNG.normal(size=50_000),
    "ties": np.round(RNG.normal(size=50_000), 1),
    "heavy tails": RNG.standard_cauchy(size=50_000),
    "lognormal": RNG.lognormal(0, 3, size=20_000),
    "constant": np.full(500, 3.0),
    "one score": np.array([2.0]),
}


def _queries(training: np.ndarray) -> np.ndarray:
    s = np.sort(training)
    special = [np.nan, np.inf, -np.inf, s[0], s[-1], s[0] - 1, s[-1] + 1, np.median(s)]
    return np.concatenate(
        [RNG.choice(training, 5000), RNG.normal(size=5000) * 10 * (s.std() + 1), special]
    )


@pytest.mark.parametrize("name", list(TRAINING))
def test_counts_equal_searchsorted(name: str) -> None:
    sorted_scores = np.sort(TRAINING[name])
    index = RankIndex(sorted_scores)
    values = _queries(TRAINING[name])
    expected = np.searchsorted(sorted_scores, values, side="right")
    np.testing.assert_array_equal(index.count_at_or_below(values), expected)
    grid = values[:100].reshape(10, 10)  # any shape
    np.testing.assert_array_equal(
        index.count_at_or_below(grid), np.searchsorted(sorted_scores, grid, side="right")
    )
    assert index.count_at_or_below(np.empty(0)).shape == (0,)


def test_non_finite_training_scores_are_counted_by_searchsorted() -> None:
    sorted_scores = np.array([-np.inf, 0.0, 1.0, 1.0, np.inf])
    values = np.array([-np.inf, -1.0, 0.0, 0.5, 1.0, 2.0, np.inf, np.nan])
    np.testing.assert_array_equal(
        RankIndex(sorted_scores).count_at_or_below(values),
        np.searchsorted(sorted_scores, values, side="right"),
    )


def test_rank_normalisation_is_unchanged_and_its_index_is_not_pickled() -> None:
    training = RNG.gamma(2.0, size=30_000)
    stats = TrainingStats.from_scores(training, 0.1)
    scores = RNG.gamma(2.0, size=4000)
    expected = np.searchsorted(np.sort(training), scores, side="right") / training.size
    np.testing.assert_array_equal(stats.normalize(scores, "rank"), expected)
    assert stats.rank_index() is stats.rank_index()  # built once
    again = pickle.loads(pickle.dumps(stats))
    assert "_rank_index" not in again.__dict__
    np.testing.assert_array_equal(again.normalize(scores, "rank"), expected)


def test_an_ensemble_of_rank_normalised_members_scores_as_before() -> None:
    class Shift:
        def __init__(self, k: float) -> None:
            self.k = k

        def decision_function(self, X: np.ndarray) -> np.ndarray:
            return X.sum(axis=1) * self.k

    X = RNG.normal(size=(3000, 3))
    members = [Shift(1.0), Shift(-2.0), Shift(0.5)]
    stats = [TrainingStats.from_scores(m.decision_function(X), 0.1) for m in members]
    scorer = EnsembleScorer(members, stats, "average", "rank")
    Y = RNG.normal(size=(1000, 3))
    manual = np.column_stack(
        [
            np.searchsorted(s.sorted_scores, m.decision_function(Y), side="right") / 3000
            for m, s in zip(members, stats, strict=True)
        ]
    ).mean(axis=1)
    np.testing.assert_array_equal(scorer.decision_function(Y), manual)

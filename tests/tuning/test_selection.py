"""The unsupervised criteria reward candidates that agree with the others."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import rankdata, spearmanr

from adp.errors import ConfigError
from adp.tuning.selection import (
    criterion,
    judge,
    model_centrality,
    spearman_matrix,
    top_consensus,
)
from adp.tuning.trials import TrialOutcome


def _candidates(rng: np.random.Generator, n_rows: int = 2000) -> np.ndarray:
    truth = rng.normal(size=n_rows)
    good = [truth + rng.normal(scale=s, size=n_rows) for s in (0.3, 0.5, 0.8, 1.0)]
    noise = rng.normal(size=n_rows)
    return np.stack([*good, noise])


def test_spearman_matrix_matches_scipy():
    scores = np.random.default_rng(0).normal(size=(4, 300))
    scores[1] = np.round(scores[1])  # ties
    expected = spearmanr(scores, axis=1).statistic
    np.testing.assert_allclose(spearman_matrix(scores), expected, atol=1e-12)


@pytest.mark.parametrize("function", [model_centrality, top_consensus])
def test_the_outlier_candidate_ranks_last(function):
    scores = _candidates(np.random.default_rng(1))
    values = function(scores)
    assert values.shape == (5,)
    assert np.all((values >= -1) & (values <= 1))
    assert int(np.argmin(values)) == 4  # pure noise agrees with nobody
    assert int(np.argmax(values)) == 0  # the least noisy copy of the truth is central


def test_model_centrality_depends_on_ranks_only():
    scores = _candidates(np.random.default_rng(1))
    transformed = scores.copy()
    transformed[2] = np.exp(transformed[2])  # a monotone transform of one candidate
    np.testing.assert_allclose(model_centrality(transformed), model_centrality(scores))


def test_model_centrality_is_the_mean_correlation_with_the_others():
    scores = _candidates(np.random.default_rng(2), 500)
    corr = spearmanr(scores, axis=1).statistic
    expected = (corr.sum(axis=1) - 1) / (len(scores) - 1)
    np.testing.assert_allclose(model_centrality(scores), expected, atol=1e-12)


def test_model_centrality_orders_like_correlation_with_the_mean_rank():
    scores = np.random.default_rng(4).normal(size=(6, 400)) + np.linspace(0, 2, 6)[:, None] * (
        np.random.default_rng(5).normal(size=400)
    )
    mean_rank = rankdata(scores, axis=1).mean(axis=0)
    with_consensus = [spearmanr(row, mean_rank).statistic for row in scores]
    assert np.argsort(model_centrality(scores)).tolist() == np.argsort(with_consensus).tolist()


def test_top_consensus_rewards_the_top_of_the_ranking():
    rng = np.random.default_rng(6)
    truth = np.concatenate([rng.normal(size=950), rng.normal(6, 1, size=50)])
    tops_right = truth + rng.normal(scale=0.2, size=1000)
    # Ranks the normal rows like the truth but scatters the top: high correlation, bad AP.
    scrambled = truth.copy()
    scrambled[950:] = rng.normal(size=50)
    scores = np.stack([truth, tops_right, truth + rng.normal(scale=0.3, size=1000), scrambled])
    values = top_consensus(scores, fraction=0.05)
    assert int(np.argmin(values)) == 3 and values[3] < 0.5 < values[1]


def test_degenerate_inputs():
    assert model_centrality(np.ones((1, 10))).tolist() == [0.0]
    constant = np.vstack([np.arange(10.0), np.arange(10.0) ** 2, np.ones(10)])
    values = model_centrality(constant)
    assert values[2] == pytest.approx(0.0) and values[0] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="model_centrality"):
        criterion("silhouette")


def test_judge_fills_scores_and_drops_the_arrays():
    scores = _candidates(np.random.default_rng(3), 200)
    outcomes = [TrialOutcome(i, "pca", {}, scores=s) for i, s in enumerate(scores)]
    outcomes.append(TrialOutcome(9, "knn", {}, status="failed", error="ValueError: boom"))
    judged = judge(outcomes, "model_centrality")
    assert all(o.scores is None for o in judged)
    np.testing.assert_allclose([o.score for o in judged[:5]], model_centrality(scores))
    assert judged[5].status == "failed" and math.isnan(judged[5].score)
    lone = judge([TrialOutcome(0, "pca", {}, scores=scores[0])], "top_consensus")
    assert lone[0].status == "ok" and math.isnan(lone[0].score)

"""Scorers learned from labels: what a learned detector ships to the workers.

Each has ADP's scorer contract (:class:`adp.detect.scorers.Scorer`): ``decision_function(X)``
gives one float64 per row of the feature matrix ``X``, higher for more anomalous rows, and a
row's score depends only on the fitted model and that row, so scoring stays
partition-parallel and partition-invariant.

- :func:`detector_scores`: the unsupervised parent's score columns for a matrix: each
  ensemble member's score standardised with its *training* statistics, or a single
  detector's raw score (never statistics of the scored batch);
- :class:`StackedScorer`: XGBOD's idea (Zhao & Hryniewicki, 2018): a supervised classifier
  (scikit-learn's ``HistGradientBoostingClassifier``) on the parent's scores beside the
  features; the score is the classifier's log-odds of "anomaly";
- :class:`WeightedMembersScorer`: an ensemble's members combined with learned weights (a
  logistic regression on their standardised scores).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adp.detect.combine import EnsembleScorer
from adp.detect.scorers import Scorer

#: Scores beyond this magnitude are clipped before a classifier sees them (PCA gives
#: infinite scores for rows off a zero-variance component; scikit-learn refuses infinity).
_CLIP = 1e12


def _finite(values: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(values, nan=np.nan, posinf=_CLIP, neginf=-_CLIP), -_CLIP, _CLIP)


def member_count(scorer: Scorer) -> int:
    """How many score columns :func:`detector_scores` gives for ``scorer``."""
    return len(scorer.scorers) if isinstance(scorer, EnsembleScorer) else 1


def detector_scores(scorer: Scorer, X: np.ndarray) -> np.ndarray:
    """The parent detector's score columns for the rows of ``X`` (rows x columns).

    Parameters
    ----------
    scorer : Scorer
        The parent's fitted scorer. An :class:`~adp.detect.combine.EnsembleScorer` gives
        one column per member, each standardised with that member's training-score mean
        and standard deviation; any other scorer its own score.
    X : ndarray
        The feature matrix.

    Returns
    -------
    ndarray of float64, shape (n_rows, :func:`member_count`)
        Finite (infinite scores clipped to +-1e12; missing stays NaN).
    """
    if isinstance(scorer, EnsembleScorer):
        columns = [
            stats.normalize(np.asarray(member.decision_function(X), dtype=np.float64), "zscore")
            for member, stats in zip(scorer.scorers, scorer.stats, strict=True)
        ]
        return _finite(np.column_stack(columns))
    raw = np.asarray(scorer.decision_function(X), dtype=np.float64)
    return _finite(raw.reshape(-1, 1))


def member_ranks(scorer: EnsembleScorer, X: np.ndarray) -> np.ndarray:
    """Each member's score of the rows of ``X`` as its training-score empirical CDF, in
    ``[0, 1]`` (rows x members): a common scale on which members can disagree."""
    columns = [
        stats.normalize(np.asarray(member.decision_function(X), dtype=np.float64), "rank")
        for member, stats in zip(scorer.scorers, scorer.stats, strict=True)
    ]
    return np.column_stack(columns)


class StackedScorer:
    """A classifier over the parent's scores and the features (XGBOD-style).

    Parameters
    ----------
    parent : Scorer
        The unsupervised parent's fitted scorer.
    classifier : object
        A fitted binary classifier with ``decision_function`` (log-odds of class 1) over
        ``[detector_scores(parent, X), X]`` when ``use_features``, else the scores alone.
    use_features : bool
        Whether the classifier also sees the raw features.
    """

    def __init__(self, parent: Scorer, classifier: Any, use_features: bool = True) -> None:
        self.parent = parent
        self.classifier = classifier
        self.use_features = use_features

    def design(self, X: np.ndarray) -> np.ndarray:
        """The classifier's input for the rows of ``X``."""
        scores = detector_scores(self.parent, X)
        return np.hstack([scores, _finite(X)]) if self.use_features else scores

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The classifier's log-odds that each row is an anomaly."""
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self.classifier.decision_function(self.design(X)), dtype=np.float64)


class WeightedMembersScorer:
    """An ensemble's members, standardised, combined with learned weights.

    Parameters
    ----------
    parent : EnsembleScorer
        The fitted ensemble.
    weights : ndarray of shape (n_members,)
        One weight per member (a logistic regression's coefficients).
    intercept : float
        Added to every score (the score is the regression's log-odds).
    """

    def __init__(self, parent: EnsembleScorer, weights: np.ndarray, intercept: float) -> None:
        self.parent = parent
        self.weights = np.asarray(weights, dtype=np.float64)
        self.intercept = float(intercept)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """``detector_scores(parent, X) @ weights + intercept``."""
        if X.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        scores = np.nan_to_num(detector_scores(self.parent, X), nan=0.0)
        return scores @ self.weights + self.intercept


__all__ = [
    "StackedScorer",
    "WeightedMembersScorer",
    "detector_scores",
    "member_count",
    "member_ranks",
]

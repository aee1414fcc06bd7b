"""Scorers: what a fitted detector ships to the workers to score rows.

A scorer has one method, ``score_samples(X) -> ndarray``, whose result for a row depends
only on the fitted model and that row (higher = more anomalous, PyOD's orientation).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """What ``score_samples`` promises: one float64 score per row of ``X``."""

    def score_samples(self, X: np.ndarray) -> np.ndarray: ...


class PyODScorer:
    """Score with a fitted PyOD detector's ``decision_function`` (row-independent ones)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.decision_function(X), dtype=np.float64)


class NegatedSklearnScorer:
    """Score with a fitted scikit-learn outlier detector, flipping its orientation.

    scikit-learn's ``score_samples`` is *higher for normal* rows; ADP's scores are higher
    for anomalies, so the scorer returns its negation.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        return -np.asarray(self.estimator.score_samples(X), dtype=np.float64)

"""Scorers: what a fitted detector ships to the workers to score rows.

A scorer has one method, ``decision_function(X) -> ndarray`` (PyOD's name and orientation:
higher = more anomalous), whose result for a row depends only on the fitted model and that
row. It is *not* scikit-learn's ``score_samples``, which is higher for normal rows.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scorer(Protocol):
    """What ``decision_function`` promises: one float64 score per row of ``X``."""

    def decision_function(self, X: np.ndarray) -> np.ndarray: ...


class PyODScorer:
    """Score with a fitted PyOD detector's ``decision_function`` (row-independent ones)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.decision_function(X), dtype=np.float64)


class NegatedSklearnScorer:
    """Score with a fitted scikit-learn outlier detector, flipping its orientation.

    scikit-learn's ``score_samples`` is *higher for normal* rows; ADP's scores are higher
    for anomalies, so the scorer returns its negation.
    """

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return -np.asarray(self.estimator.score_samples(X), dtype=np.float64)

"""ECOD and COPOD scoring against frozen empirical CDFs.

PyOD's ``ECOD.decision_function(X)`` and ``COPOD.decision_function(X)`` re-fit on the
training data *plus* ``X``: a row's score depends on the batch it is scored in, and every
call pays a pass over the training data. ADP freezes the per-feature ECDFs of the training
sample at fit time and scores each row against them alone, so a row's score depends only on
the fitted model and the row. On the training rows the scores equal PyOD's
``decision_scores_`` exactly (same ECDF with ties resolved to the right, same skewness).

A value below (above) every training value has an empirical left (right) tail probability
of zero; ADP gives it ``1 / (n + 1)``, just beyond the most extreme training row, so its
score is finite and larger than any training row's on that feature.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.stats import skew

Method = Literal["ecod", "copod"]


class FrozenEcdfScorer:
    """Score rows with ECOD or COPOD against per-feature ECDFs fixed at fit time.

    Parameters
    ----------
    X_train : ndarray of shape (n_samples, n_features)
        The training sample.
    method : {"ecod", "copod"}
        Which aggregation of the tail probabilities to use.
    """

    def __init__(self, X_train: np.ndarray, method: Method) -> None:
        X_train = np.asarray(X_train, dtype=np.float64)
        if X_train.ndim != 2 or X_train.shape[0] == 0:
            raise ValueError("X_train must be a non-empty 2-D array")
        self.method: Method = method
        self.sorted_train_ = np.sort(X_train, axis=0)
        self.n_train_ = X_train.shape[0]
        self.skew_sign_ = np.sign(np.nan_to_num(skew(X_train, axis=0)))

    def tail_log_probabilities(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return ``-log`` of the left and right tail probabilities of every cell of ``X``."""
        X = np.asarray(X, dtype=np.float64)
        n = self.n_train_
        floor = 1.0 / (n + 1)
        u_left = np.empty_like(X)
        u_right = np.empty_like(X)
        for j in range(X.shape[1]):
            column = self.sorted_train_[:, j]
            below_or_equal = np.searchsorted(column, X[:, j], side="right")
            above_or_equal = n - np.searchsorted(column, X[:, j], side="left")
            u_left[:, j] = np.maximum(below_or_equal / n, floor)
            u_right[:, j] = np.maximum(above_or_equal / n, floor)
        return -np.log(u_left), -np.log(u_right)

    def dimension_scores(self, X: np.ndarray) -> np.ndarray:
        """Per-feature outlyingness (rows x features); their row sums are the scores."""
        u_left, u_right = self.tail_log_probabilities(X)
        s = self.skew_sign_
        u_skew = u_left * -1 * np.sign(s - 1) + u_right * np.sign(s + 1)
        if self.method == "ecod":
            return np.maximum(u_skew, np.maximum(u_left, u_right))
        return np.maximum(u_skew, (u_left + u_right) / 2)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Anomaly scores of ``X`` (higher is more anomalous)."""
        return self.dimension_scores(X).sum(axis=1)

"""The NumPy reference of ECOD and COPOD scoring against frozen ECDFs: the definition the
compiled kernels of :mod:`adp.detect.ecdf` follow, cell for cell (and what scores a training
sample with non-finite values)."""

from __future__ import annotations

import numpy as np


def tail_log_probabilities(
    sorted_columns: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``-log`` of the left and right tail probabilities of every cell of ``X``.

    Parameters
    ----------
    sorted_columns : ndarray of shape (n_features, n_train)
        Each training column, sorted.
    X : ndarray of shape (n_rows, n_features)
        Rows to score (float64).

    Returns
    -------
    u_left, u_right : ndarray of shape (n_rows, n_features)
        ``-log`` of the share of training values at or below (at or above) each cell,
        floored at ``1 / (n_train + 1)``; two ``searchsorted`` per feature.
    """
    n = sorted_columns.shape[1]
    floor = 1.0 / (n + 1)
    u_left = np.empty_like(X)
    u_right = np.empty_like(X)
    for j in range(X.shape[1]):
        column = sorted_columns[j]
        below_or_equal = np.searchsorted(column, X[:, j], side="right")
        above_or_equal = n - np.searchsorted(column, X[:, j], side="left")
        u_left[:, j] = np.maximum(below_or_equal / n, floor)
        u_right[:, j] = np.maximum(above_or_equal / n, floor)
    return -np.log(u_left), -np.log(u_right)


def dimension_scores(
    sorted_columns: np.ndarray, skew_sign: np.ndarray, method: str, X: np.ndarray
) -> np.ndarray:
    """Per-feature ECOD or COPOD terms of every cell of ``X`` (their row sums are the scores).

    Parameters
    ----------
    sorted_columns : ndarray of shape (n_features, n_train)
        Each training column, sorted.
    skew_sign : ndarray of shape (n_features,)
        Sign of each training column's skewness.
    method : {"ecod", "copod"}
        The aggregation of the tail probabilities.
    X : ndarray of shape (n_rows, n_features)
        Rows to score (float64).

    Returns
    -------
    ndarray of shape (n_rows, n_features)
    """
    u_left, u_right = tail_log_probabilities(sorted_columns, X)
    s = skew_sign
    u_skew = u_left * -1 * np.sign(s - 1) + u_right * np.sign(s + 1)
    if method == "ecod":
        return np.maximum(u_skew, np.maximum(u_left, u_right))
    return np.maximum(u_skew, (u_left + u_right) / 2)


__all__ = ["dimension_scores", "tail_log_probabilities"]

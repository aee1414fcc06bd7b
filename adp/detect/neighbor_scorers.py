"""KNN and LOF scorers on the exact blocked neighbour search.

PyOD's ``KNN.decision_function`` and ``LOF.decision_function`` ask scikit-learn for each new
row's nearest training rows: with more than 15 features that is a brute-force search on
float64 BLAS with a heap per row, and below that a tree whose pruning fails in many
dimensions. :class:`KnnScorer` and :class:`LofScorer` freeze what scoring needs at fit
(the training rows; for LOF also their k-distances and local reachability densities) and
search with :class:`~adp.detect.neighbor_search.ExactNeighbors`. The scores are then computed
from the neighbours with PyOD's and scikit-learn's own NumPy expressions.

Equality with PyOD: the distances are the exact Euclidean distances scikit-learn's trees
compute (bit for bit), so the scores equal PyOD's whenever its search is exact (a tree:
``algorithm="ball_tree"`` / ``"kd_tree"``, or ``"auto"`` with at most 15 features; or integer
data, which brute force computes exactly). PyOD's brute-force distances carry the rounding of
``|x|^2 + |y|^2 - 2 x.y`` (relative 1e-16, absolute up to 1e-8 for near-duplicate rows),
which these scorers do not reproduce. Where training rows tie at the k-th distance, KNN's
score does not depend on which are taken; LOF's does, and those rows are scored by
scikit-learn's own search (see :class:`LofScorer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from adp.detect.neighbor_search import ExactNeighbors
from adp.detect.scorers import NegatedSklearnScorer, PyODScorer, Scorer
from adp.errors import DetectorError

_KNN_METHODS = ("largest", "mean", "median")
_TIE_LOOKAHEAD = 4  # neighbours fetched past the k-th, to see a run of ties to its end


def is_euclidean(estimator: Any) -> bool:
    """Whether a neighbour estimator's metric is the plain Euclidean distance.

    Parameters
    ----------
    estimator : object
        A fitted scikit-learn ``NearestNeighbors`` or ``LocalOutlierFactor``.
    """
    metric = getattr(estimator, "effective_metric_", None)
    params = getattr(estimator, "effective_metric_params_", None) or {}
    if metric == "minkowski" and params.get("p", 2) == 2:
        params = {key: value for key, value in params.items() if key != "p"}
        metric = "euclidean"
    return metric in ("euclidean", "l2") and not params


def _fit_matrix(estimator: Any) -> np.ndarray | None:
    """The dense float64 training rows of a fitted neighbour estimator, or None."""
    fitted = getattr(estimator, "_fit_X", None)
    if fitted is None or sp.issparse(fitted):
        return None
    matrix = np.asarray(fitted)
    if matrix.dtype != np.float64:
        return None
    return matrix


class KnnScorer:
    """PyOD ``KNN`` (``largest``, ``mean`` or ``median``) on the exact blocked search.

    Parameters
    ----------
    estimator : pyod.models.knn.KNN
        The fitted detector (Euclidean metric).
    """

    def __init__(self, estimator: Any) -> None:
        if estimator.method not in _KNN_METHODS:
            raise DetectorError(
                f"KNN method must be one of {_KNN_METHODS}, got {estimator.method!r}"
            )
        self.method = str(estimator.method)
        self.n_neighbors = int(estimator.n_neighbors)
        self.search = ExactNeighbors(estimator.neigh_._fit_X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The distance to the k-th nearest training row (or the mean or median of the k).

        Raises
        ------
        adp.errors.DataError
            When ``X`` has the wrong number of features or non-finite values.
        """
        distances, _ = self.search.kneighbors(X, self.n_neighbors)
        # PyOD's KNN._get_dist_by_method, on the same distances.
        if self.method == "largest":
            return np.ascontiguousarray(distances[:, -1])
        if self.method == "mean":
            return np.mean(distances, axis=1)
        return np.median(distances, axis=1)


class LofScorer:
    """PyOD ``LOF`` (scikit-learn's ``LocalOutlierFactor(novelty=True)``) on the exact search.

    Parameters
    ----------
    estimator : pyod.models.lof.LOF or sklearn.neighbors.LocalOutlierFactor
        The fitted detector (Euclidean metric; scikit-learn's with ``novelty=True``).

    Notes
    -----
    Where equally distant training rows with different k-distances or densities meet at
    the k-th neighbour (or next to each other among the k), which ones are taken, or the
    order in which they are averaged, changes the score. scikit-learn's search decides that
    by the order it meets rows in; those rows (none in continuous data, some in integer-valued
    data) are scored by the fitted estimator's own search, so every score is PyOD's.
    """

    def __init__(self, estimator: Any) -> None:
        lof = getattr(estimator, "detector_", estimator)
        self.lof_ = lof
        self.n_neighbors = int(lof.n_neighbors_)
        self.search = ExactNeighbors(lof._fit_X)
        self.k_distance_ = np.ascontiguousarray(lof._distances_fit_X_[:, self.n_neighbors - 1])
        self.lrd_ = np.asarray(lof._lrd)

    def _ambiguous(self, distances: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Rows whose score depends on how scikit-learn orders equally distant rows.

        ``distances`` and ``indices`` hold more than ``k`` neighbours when there are more
        training rows. A tie matters where the tied rows differ in k-distance or density:
        next to each other among the ``k`` (their averaging order) or anywhere in the run
        of rows tied with the ``k``-th (which of them are taken). A run that reaches past
        the neighbours fetched cannot be checked and counts as ambiguous.
        """
        k = self.n_neighbors
        tied = distances[:, 1:] == distances[:, :-1]
        left, right = indices[:, :-1], indices[:, 1:]
        differ = (self.k_distance_[left] != self.k_distance_[right]) | (
            self.lrd_[left] != self.lrd_[right]
        )
        relevant = np.ones_like(tied)
        if distances.shape[1] > k:  # the run of rows tied with the k-th one
            relevant[:, k - 1 :] = np.cumprod(tied[:, k - 1 :], axis=1).astype(bool)
        ambiguous = (tied & differ & relevant).any(axis=1)
        if distances.shape[1] > k and distances.shape[1] < self.search.X_train.shape[0]:
            ambiguous |= relevant[:, -1]
        return np.asarray(ambiguous)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The local outlier factor of each row against the training rows.

        Raises
        ------
        adp.errors.DataError
            When ``X`` has the wrong number of features or non-finite values.
        """
        k = self.n_neighbors
        wanted = min(k + _TIE_LOOKAHEAD, self.search.X_train.shape[0])
        distances, indices = self.search.kneighbors(X, wanted)
        ambiguous = self._ambiguous(distances, indices)
        distances, indices = distances[:, :k], indices[:, :k]
        # scikit-learn's LocalOutlierFactor.score_samples, negated as PyOD's LOF does.
        reach = np.maximum(distances, self.k_distance_[indices])
        lrd = 1.0 / (np.mean(reach, axis=1) + 1e-10)
        ratios = self.lrd_[indices] / lrd[:, np.newaxis]
        scores = np.mean(ratios, axis=1)  # PyOD's invert_order(-mean): an exact negation
        if ambiguous.any():
            rows = np.ascontiguousarray(X, dtype=np.float64)[ambiguous]
            scores[ambiguous] = -self.lof_.score_samples(rows)
        return scores


def knn_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """PyOD ``KNN`` on the exact blocked search; PyOD's own scorer for other metrics."""
    neigh = estimator.neigh_
    if (
        _fit_matrix(neigh) is None
        or not is_euclidean(neigh)
        or estimator.method not in _KNN_METHODS
    ):
        return PyODScorer(estimator)
    return KnnScorer(estimator)


def lof_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """LOF on the exact blocked search; the estimator's own scorer for other metrics.

    Accepts PyOD's ``LOF`` and scikit-learn's ``LocalOutlierFactor(novelty=True)``.
    """
    lof = getattr(estimator, "detector_", estimator)
    if _fit_matrix(lof) is None or not is_euclidean(lof):
        if lof is estimator:
            return NegatedSklearnScorer(estimator)
        return PyODScorer(estimator)
    return LofScorer(estimator)


__all__ = ["KnnScorer", "LofScorer", "is_euclidean", "knn_scorer", "lof_scorer"]

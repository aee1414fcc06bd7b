"""COF and SOD that score new rows against the fitted training rows.

PyOD's ``COF.decision_function(X)`` and ``SOD.decision_function(X)`` look for neighbours
*inside the batch* ``X``: a row's score depends on which other rows are scored with it (and
COF fails outright on a batch smaller than ``n_neighbors + 1``). ADP's versions keep the
training rows and their neighbourhoods from :meth:`fit` and look for a new row's neighbours
among the training rows only, as scikit-learn's ``LocalOutlierFactor(novelty=True)`` does, so
a row's score depends only on the fitted model and the row.

On the training rows, ``decision_scores_`` follows PyOD's definitions (a row is not its own
neighbour). Scoring a training row again with :meth:`decision_function` treats it as a new
row, which is its own nearest neighbour, exactly like LOF and KNN in PyOD.

New rows' neighbours (Euclidean metric) come from the exact blocked search of
:mod:`adp.detect.neighbor_search`: the tree's distances, ties broken by training-row index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from pyod.models.base import BaseDetector
from sklearn.neighbors import NearestNeighbors
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from adp.detect.neighbor_search import ExactNeighbors
from adp.errors import DetectorError

_CHUNK_CELLS = 2_000_000  # float64 cells per temporary block


def _new_row_neighbours(model: Any, X: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest training rows of each new row: the exact blocked search, built
    once per fitted model (also for models pickled before it existed)."""
    search = getattr(model, "search_", None)
    if search is None:
        search = model.search_ = ExactNeighbors(model.X_train_)
    _, neighbours = search.kneighbors(X, k)
    return neighbours


def _chunks(n_rows: int, cells_per_row: int) -> list[slice]:
    step = max(1, _CHUNK_CELLS // max(1, cells_per_row))
    return [slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step)]


class COF(BaseDetector):
    """Connectivity-based outlier factor, scored against the training rows.

    Parameters
    ----------
    contamination : float
        Share of outliers in the training data (PyOD's convention).
    n_neighbors : int
        Neighbours in each row's set-based nearest path.
    algorithm : {"auto", "ball_tree", "kd_tree", "brute"}
        Neighbour search (scikit-learn's ``NearestNeighbors``).
    leaf_size : int
        Leaf size of the search tree.
    n_jobs : int
        Threads for the neighbour search.

    Notes
    -----
    Follows PyOD's ``COF(method="fast")``: a row's average chaining distance uses its
    ``n_neighbors`` nearest neighbours in order of distance, and its COF is that distance over
    the mean of its neighbours' chaining distances, which are fixed at fit time.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        n_neighbors: int = 20,
        algorithm: str = "auto",
        leaf_size: int = 30,
        n_jobs: int = 1,
    ) -> None:
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any = None) -> COF:
        X = check_array(X, dtype=np.float64)
        self._set_n_classes(y)
        if X.shape[0] <= self.n_neighbors:
            raise DetectorError(
                f"COF needs more training rows than n_neighbors={self.n_neighbors}; "
                f"got {X.shape[0]}"
            )
        self.X_train_ = X
        self.n_neighbors_ = int(self.n_neighbors)
        self.tree_ = NearestNeighbors(
            n_neighbors=self.n_neighbors_,
            algorithm=self.algorithm,
            leaf_size=self.leaf_size,
            n_jobs=self.n_jobs,
        ).fit(X)
        neighbours = self.tree_.kneighbors(return_distance=False)
        self.search_ = ExactNeighbors(X)
        self.ac_dist_ = self._chaining_distances(X, neighbours)
        self.decision_scores_ = self._cof(self.ac_dist_, neighbours)
        self._process_decision_scores()
        return self

    def _chaining_distances(self, X: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
        k = self.n_neighbors_
        weights = 2.0 * (k + 1 - np.arange(1, k + 1)) / ((k + 1) * k)
        out = np.empty(X.shape[0])
        for rows in _chunks(X.shape[0], (k + 1) ** 2 * X.shape[1]):
            path = np.concatenate([X[rows, None, :], self.X_train_[neighbours[rows]]], axis=1)
            dist = np.sqrt(((path[:, :, None, :] - path[:, None, :, :]) ** 2).sum(axis=-1))
            costs = np.empty((path.shape[0], k))
            for j in range(k):
                costs[:, j] = dist[:, j + 1, : j + 1].min(axis=1)
            out[rows] = costs @ weights
        return out

    def _cof(self, ac_dist: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            cof = ac_dist * self.n_neighbors_ / self.ac_dist_[neighbours].sum(axis=1)
        return np.nan_to_num(cof)

    def decision_function(self, X: Any) -> np.ndarray:
        """COF of each row of ``X`` against the training rows (higher is more anomalous)."""
        check_is_fitted(self, ["ac_dist_", "tree_"])
        X = check_array(X, dtype=np.float64)
        neighbours = _new_row_neighbours(self, X, self.n_neighbors_)
        return self._cof(self._chaining_distances(X, neighbours), neighbours)


class SOD(BaseDetector):
    """Subspace outlier detection with reference sets drawn from the training rows.

    Parameters
    ----------
    contamination : float
        Share of outliers in the training data (PyOD's convention).
    n_neighbors : int
        Neighbours that define shared-nearest-neighbour similarity.
    ref_set : int
        Size of each row's reference set (smaller than ``n_neighbors``).
    alpha : float
        A feature is relevant when its variance in the reference set is below
        ``alpha`` times the mean variance.
    algorithm, leaf_size, metric, p, metric_params, n_jobs
        Neighbour search (scikit-learn's ``NearestNeighbors``).

    Notes
    -----
    As in PyOD, a row's reference set is the ``ref_set`` training rows sharing most of its
    ``n_neighbors`` nearest neighbours; ADP breaks ties between equal counts by training-row
    order (PyOD by an unstable sort) and, when fewer than ``ref_set`` training rows share any
    neighbour, completes the set with the row's nearest neighbours.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        n_neighbors: int = 20,
        ref_set: int = 10,
        alpha: float = 0.8,
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: str = "minkowski",
        p: int = 2,
        metric_params: dict[str, Any] | None = None,
        n_jobs: int = 1,
    ) -> None:
        super().__init__(contamination=contamination)
        self.n_neighbors = n_neighbors
        self.ref_set = ref_set
        self.alpha = alpha
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any = None) -> SOD:
        X = check_array(X, dtype=np.float64)
        self._set_n_classes(y)
        if not 0 < self.ref_set < self.n_neighbors < X.shape[0]:
            raise DetectorError(
                "SOD needs 0 < ref_set < n_neighbors < training rows; got "
                f"ref_set={self.ref_set}, n_neighbors={self.n_neighbors}, rows={X.shape[0]}"
            )
        self.X_train_ = X
        self.tree_ = NearestNeighbors(
            n_neighbors=self.n_neighbors,
            algorithm=self.algorithm,
            leaf_size=self.leaf_size,
            metric=self.metric,
            p=self.p,
            metric_params=self.metric_params,
            n_jobs=self.n_jobs,
        ).fit(X)
        neighbours = self.tree_.kneighbors(return_distance=False)
        self.search_ = ExactNeighbors(X) if self._euclidean() else None
        self.membership_ = self._incidence(neighbours)
        self.decision_scores_ = self._scores(X, neighbours, exclude_self=True)
        self._process_decision_scores()
        return self

    def _euclidean(self) -> bool:
        from adp.detect.neighbor_scorers import is_euclidean

        return is_euclidean(self.tree_)

    def _incidence(self, neighbours: np.ndarray) -> sp.csr_matrix:
        n_rows, k = neighbours.shape
        data = np.ones(n_rows * k, dtype=np.int32)
        rows = np.repeat(np.arange(n_rows), k)
        return sp.csr_matrix(
            (data, (rows, neighbours.ravel())), shape=(n_rows, self.X_train_.shape[0])
        )

    def _reference_sets(self, neighbours: np.ndarray, exclude_self: bool) -> np.ndarray:
        out = np.empty((neighbours.shape[0], self.ref_set), dtype=np.int64)
        for rows in _chunks(neighbours.shape[0], self.n_neighbors**2):
            shared = (self._incidence(neighbours[rows]) @ self.membership_.T).tocsr()
            for offset, i in enumerate(range(rows.start, rows.stop)):
                start, stop = shared.indptr[offset], shared.indptr[offset + 1]
                cols, counts = shared.indices[start:stop], shared.data[start:stop]
                if exclude_self:
                    keep = cols != i
                    cols, counts = cols[keep], counts[keep]
                order = np.lexsort((cols, -counts))  # most shared first, then training order
                chosen = [int(j) for j in cols[order[: self.ref_set]]]
                if len(chosen) < self.ref_set:
                    chosen += [int(j) for j in neighbours[i] if j not in chosen]
                out[i] = chosen[: self.ref_set]
        return out

    def _scores(self, X: np.ndarray, neighbours: np.ndarray, exclude_self: bool) -> np.ndarray:
        ref_inds = self._reference_sets(neighbours, exclude_self)
        ref = self.X_train_[ref_inds]  # rows x ref_set x features
        means = ref.mean(axis=1)
        var_total = ((ref - means[:, None, :]) ** 2).sum(axis=(1, 2)) / self.ref_set
        var_expect = self.alpha * var_total / X.shape[1]
        relevant = ref.var(axis=1) < var_expect[:, None]
        rel_dim = relevant.sum(axis=1)
        spread = (relevant * (X - means) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(rel_dim > 0, np.sqrt(spread / np.maximum(rel_dim, 1)), 0.0)
        return scores

    def decision_function(self, X: Any) -> np.ndarray:
        """SOD of each row of ``X`` with reference sets from the training rows."""
        check_is_fitted(self, ["membership_", "tree_"])
        X = check_array(X, dtype=np.float64)
        if self._euclidean():
            neighbours = _new_row_neighbours(self, X, self.n_neighbors)
        else:
            neighbours = self.tree_.kneighbors(X, return_distance=False)
        return self._scores(X, neighbours, exclude_self=False)

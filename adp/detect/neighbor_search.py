"""Exact k-nearest-neighbour search of new rows among training rows, screened on BLAS.

:class:`ExactNeighbors` finds, for each query row, its ``k`` nearest training rows under the
Euclidean distance, with the distances scikit-learn's trees compute (the sum of squared
differences in feature order, then its square root) and ties broken by training-row index.
It works in two steps per block of query rows:

1. **Screening.** A float32 BLAS product of the centred, scaled query block with a tile of
   training rows gives every pair's ``|y|^2 - 2 x.y`` (the squared distance less the query's
   own norm), tile by tile so each tile stays in cache. A compiled pass keeps each row's
   ``k`` smallest screening values and every training row whose value is within a margin of
   the current ``k``-th: the margin is a rigorous bound on the float32 rounding error
   (inputs, products and any order of summation), so every training row that can be among
   the exact ``k`` nearest, tied ones included, is kept.
2. **Exact distances.** The kept candidates (a few more than ``k``) get their exact float64
   distances, computed as scikit-learn's euclidean metric computes them, and the ``k``
   smallest by (distance, index) are returned.

A row whose candidates overflow the buffer (many training rows tied at the same distance) is
screened again with a larger one, so the result never depends on the buffer, the block or
the batch: a row's neighbours depend only on the training rows and the row.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from adp.errors import DataError, DetectorError

_U32 = 2.0**-24  # float32 unit roundoff
_TINY32 = 2.0**-126  # smallest normal float32: bounds the absolute error of subnormals
_QUERY_BLOCK = 256
_TRAIN_TILE = 2048  # 2048 x 256 float32 values per tile (2 MiB)
_CHUNK = 32  # query rows tested per vectorised count
_HUGE = 1e300  # "no value yet" in the running heaps
_CANDIDATE_CELLS = 4_000_000  # candidates held per screening pass (64 MB)
_MAX_SCALED_NORM = 2.0**40  # queries farther than this (in training radii) skip screening


@numba.njit(cache=True, nogil=True)
def _heap_replace_top(heap: np.ndarray, value: float) -> None:
    """Replace the largest value of the max-heap ``heap`` by ``value`` and restore it."""
    size = heap.shape[0]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap[left + 1] > heap[left]:
            child = left + 1
        if heap[child] <= value:
            break
        heap[i] = heap[child]
        i = child
    heap[i] = value


@numba.njit(cache=True, nogil=True)
def _compact(values: np.ndarray, indices: np.ndarray, count: int, bound: float) -> int:
    """Keep the candidates of one row whose screening value is at most ``bound``."""
    kept = 0
    for c in range(count):
        if values[c] <= bound:
            values[kept] = values[c]
            indices[kept] = indices[c]
            kept += 1
    return kept


@numba.njit(cache=True, nogil=True)
def _count_within(row: np.ndarray, bounds: np.ndarray, start: int, stop: int) -> int:
    """How many ``row[q] <= bounds[q]`` for ``start <= q < stop`` (a vectorised count).

    Unsigned indices spare numba's negative-index handling, which stops vectorisation.
    """
    hits = 0
    first = numba.uint64(start)
    for i in range(stop - start):
        q = first + numba.uint64(i)
        hits += row[q] <= bounds[q]
    return hits


@numba.njit(cache=True, nogil=True)
def _float32_at_least(value: float) -> np.float32:
    """The smallest float32 not below ``value`` (so a float32 test keeps every candidate)."""
    rounded = np.float32(value)
    if rounded < value:
        rounded = np.nextafter(rounded, np.float32(np.inf))
    return rounded


@numba.njit(cache=True, nogil=True)
def _screen_tile(
    tile: np.ndarray,
    first: int,
    heaps: np.ndarray,
    margins: np.ndarray,
    bounds32: np.ndarray,
    cand_val: np.ndarray,
    cand_idx: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Fold one tile of screening values into each query row's state.

    ``tile[t, q]`` is the value of training row ``first + t`` for query row ``q``. Each query
    row keeps its ``k`` smallest values (the max-heap ``heaps[q]``) and, as candidates, every
    training row whose value is at most that heap's top plus ``margins[q]``; ``bounds32[q]``
    is that bound rounded up to float32, or ``-inf`` once the row's candidates overflowed.
    """
    width, n_rows = tile.shape
    cap = cand_val.shape[1]
    for t in range(width):
        row = tile[t]
        for q0 in range(0, n_rows, _CHUNK):
            q1 = min(q0 + _CHUNK, n_rows)
            if _count_within(row, bounds32, q0, q1) == 0:
                continue
            for q in range(q0, q1):
                v = float(row[numba.uint64(q)])
                bound = heaps[q, 0] + margins[q]
                if v > bound or v > bounds32[q]:
                    continue
                heap = heaps[q]
                if v < heap[0]:
                    _heap_replace_top(heap, v)
                    bound = heap[0] + margins[q]
                    bounds32[q] = _float32_at_least(bound)
                n = counts[q]
                if n == cap:
                    n = _compact(cand_val[q], cand_idx[q], n, bound)
                    if n == cap:  # too many ties: screened again with more room
                        bounds32[q] = -np.inf
                        continue
                cand_val[q, n] = v
                cand_idx[q, n] = first + t
                counts[q] = n + 1


@numba.njit(cache=True, nogil=True)
def _insert_sorted(best_r: np.ndarray, best_i: np.ndarray, r: float, j: int) -> None:
    """Insert ``(r, j)`` into the ascending (distance, index) lists if it beats the last."""
    k = best_r.shape[0]
    last = k - 1
    if r > best_r[last] or (r == best_r[last] and j >= best_i[last]):
        return
    pos = last
    while pos > 0 and (best_r[pos - 1] > r or (best_r[pos - 1] == r and best_i[pos - 1] > j)):
        best_r[pos] = best_r[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_r[pos] = r
    best_i[pos] = j


@numba.njit(cache=True, nogil=True)
def _rdist(x: np.ndarray, y: np.ndarray) -> float:
    """Squared Euclidean distance, summed in feature order (scikit-learn's ``rdist``)."""
    total = 0.0
    for f in range(x.shape[0]):
        diff = x[f] - y[f]
        total += diff * diff
    return total


@numba.njit(cache=True, nogil=True)
def _exact_from_candidates(
    X: np.ndarray,
    Y: np.ndarray,
    heaps: np.ndarray,
    margins: np.ndarray,
    cand_val: np.ndarray,
    cand_idx: np.ndarray,
    counts: np.ndarray,
    rdist: np.ndarray,
    indices: np.ndarray,
) -> None:
    """Exact squared distances of each row's final candidates; keep the ``k`` smallest."""
    for q in range(X.shape[0]):
        bound = heaps[q, 0] + margins[q]
        best_r = rdist[q]
        best_i = indices[q]
        best_r[:] = np.inf
        best_i[:] = np.iinfo(np.int64).max
        for c in range(counts[q]):
            if cand_val[q, c] <= bound:
                j = cand_idx[q, c]
                _insert_sorted(best_r, best_i, _rdist(X[q], Y[j]), j)


@numba.njit(cache=True, nogil=True)
def _exact_all(X: np.ndarray, Y: np.ndarray, rdist: np.ndarray, indices: np.ndarray) -> None:
    """Exact squared distances to every training row; keep the ``k`` smallest."""
    for q in range(X.shape[0]):
        best_r = rdist[q]
        best_i = indices[q]
        best_r[:] = np.inf
        best_i[:] = np.iinfo(np.int64).max
        for j in range(Y.shape[0]):
            _insert_sorted(best_r, best_i, _rdist(X[q], Y[j]), j)


_BLAS: list[ThreadpoolController] = []  # created on first use: scanning libraries costs ms


def _one_blas_thread() -> Any:
    """A context that runs BLAS on one thread: the screening products are small (a few
    MFLOP each), and a threaded BLAS spends more on waking its threads than on them
    (measured 5-10x slower on 2 cores)."""
    if not _BLAS:
        _BLAS.append(ThreadpoolController())
    return _BLAS[0].limit(limits=1, user_api="blas")


class ExactNeighbors:
    """Exact Euclidean k-nearest training rows of new rows (see the module docstring).

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
        The training rows (finite values), kept as float64.

    Notes
    -----
    The distances equal scikit-learn's ``KDTree`` / ``BallTree`` query distances bit for
    bit. Among training rows at exactly the same distance, the one with the smaller index
    comes first (scikit-learn's trees break such ties by their traversal order).
    """

    def __init__(self, X_train: Any) -> None:
        Y = np.ascontiguousarray(X_train, dtype=np.float64)
        if Y.ndim != 2 or Y.shape[0] == 0:
            raise DataError(f"training rows must be a non-empty 2-D array, got {Y.shape}")
        if not np.isfinite(Y).all():
            raise DataError("training rows contain NaN or infinite values: impute them first")
        self.X_train = Y
        self.center_ = Y.mean(axis=0)
        centred = Y - self.center_
        norms = np.sqrt(np.einsum("ij,ij->i", centred, centred))
        radius = float(norms.max())
        # A power of two, so that scaling is exact and float32 neither overflows nor
        # underflows; the scaled training rows lie within distance 2 of the centre.
        self.scale_ = 2.0 ** math.ceil(math.log2(radius)) if radius > 0 else 1.0
        scaled = centred / self.scale_
        self.radius_ = radius / self.scale_
        augmented = np.empty((Y.shape[0], Y.shape[1] + 1), dtype=np.float32)
        augmented[:, :-1] = scaled
        augmented[:, -1] = np.einsum("ij,ij->i", scaled, scaled)
        self.screen_train_ = augmented  # rows: (y, |y|^2); the product gives |y|^2 - 2 x.y

    @property
    def n_features(self) -> int:
        """Features of the training rows."""
        return int(self.X_train.shape[1])

    def kneighbors(self, X: Any, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``n_neighbors`` nearest training rows of each row of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_rows, n_features)
            Query rows (finite values).
        n_neighbors : int
            Neighbours per row, at most the number of training rows.

        Returns
        -------
        distances : ndarray of shape (n_rows, n_neighbors)
            Euclidean distances, ascending.
        indices : ndarray of shape (n_rows, n_neighbors)
            Training-row indices, by (distance, index).

        Raises
        ------
        adp.errors.DataError
            When ``X`` has the wrong number of features or non-finite values.
        adp.errors.DetectorError
            When ``n_neighbors`` is not between 1 and the number of training rows.
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(
                f"expected rows of {self.n_features} features, got an array of shape {X.shape}"
            )
        if not np.isfinite(X).all():
            raise DataError("rows to score contain NaN or infinite values: impute them first")
        k = int(n_neighbors)
        if not 1 <= k <= self.X_train.shape[0]:
            raise DetectorError(
                f"n_neighbors must be between 1 and the {self.X_train.shape[0]} training rows, "
                f"got {n_neighbors!r}"
            )
        rdist = np.empty((X.shape[0], k))
        indices = np.empty((X.shape[0], k), dtype=np.int64)
        with _one_blas_thread():
            for start in range(0, X.shape[0], _QUERY_BLOCK):
                rows = slice(start, min(start + _QUERY_BLOCK, X.shape[0]))
                self._search_block(X[rows], k, rdist[rows], indices[rows])
        return np.sqrt(rdist), indices

    def _search_block(self, X: np.ndarray, k: int, rdist: np.ndarray, indices: np.ndarray) -> None:
        scaled = (X - self.center_) / self.scale_
        norms = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
        far = norms > _MAX_SCALED_NORM
        if far.any():  # float32 could overflow: these rows are searched exactly
            far_r = np.empty((int(far.sum()), k))
            far_i = np.empty((int(far.sum()), k), dtype=np.int64)
            _exact_all(X[far], self.X_train, far_r, far_i)
            rdist[far], indices[far] = far_r, far_i
        near = np.flatnonzero(~far)
        cap = 8 * k + 64
        while near.size:  # rows with more tied candidates than ``cap`` go round again
            step = max(1, _CANDIDATE_CELLS // cap)
            overflowed = []
            for part in (near[i : i + step] for i in range(0, near.size, step)):
                overflow = self._screen(
                    X[part], scaled[part], norms[part], k, cap, rdist, indices, part
                )
                overflowed.append(part[overflow])
            near = np.concatenate(overflowed)
            cap = min(cap * 8, self.X_train.shape[0])

    def _screen(
        self,
        X: np.ndarray,
        scaled: np.ndarray,
        norms: np.ndarray,
        k: int,
        cap: int,
        rdist: np.ndarray,
        indices: np.ndarray,
        rows: np.ndarray,
    ) -> np.ndarray:
        """Screen and finish ``rows`` of the block; return a mask of those that overflowed."""
        n_rows, n_features = X.shape
        # Columns: one per query row, (-2 x, 1); the product with the training rows'
        # (y, |y|^2) gives |y|^2 - 2 x.y, which ranks training rows as |x - y|^2 does.
        query = np.empty((n_features + 1, n_rows), dtype=np.float32)
        query[:-1] = -2.0 * scaled.T
        query[-1] = 1.0
        # The rounding of the inputs, the products and a sum of n_features + 1 terms in any
        # order is at most (n_features + 4) * u * (|x| + |y|)^2, |y| <= radius (with a factor
        # 2 to spare); the bound on candidates adds two such errors.
        error = 2.0 * (n_features + 4) * _U32 * (norms + self.radius_) ** 2 + 64 * _TINY32
        margins = 2.0 * error
        heaps = np.full((n_rows, k), _HUGE)
        bounds32 = np.full(n_rows, np.inf, dtype=np.float32)
        cand_val = np.empty((n_rows, cap))
        cand_idx = np.empty((n_rows, cap), dtype=np.int64)
        counts = np.zeros(n_rows, dtype=np.int64)
        train = self.screen_train_
        tile = np.empty((min(_TRAIN_TILE, train.shape[0]), n_rows), dtype=np.float32)
        for first in range(0, train.shape[0], _TRAIN_TILE):
            block = train[first : first + _TRAIN_TILE]
            out = tile[: block.shape[0]]
            np.matmul(block, query, out=out)
            _screen_tile(out, first, heaps, margins, bounds32, cand_val, cand_idx, counts)
        overflow = bounds32 == -np.inf
        out_r = np.empty((n_rows, k))
        out_i = np.empty((n_rows, k), dtype=np.int64)
        _exact_from_candidates(
            X, self.X_train, heaps, margins, cand_val, cand_idx, counts, out_r, out_i
        )
        done = ~overflow
        rdist[rows[done]] = out_r[done]
        indices[rows[done]] = out_i[done]
        return overflow


__all__ = ["ExactNeighbors"]

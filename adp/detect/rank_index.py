"""Counting training scores at or below each scored value, through the ECDF bucket index.

An ensemble's ``rank`` normalisation puts a member's raw score ``s`` on ``[0, 1]`` as the
share of the member's training scores at or below ``s``: ``searchsorted(sorted, s,
side="right") / n``. Bisecting 100,000 sorted scores for every row is a chain of dependent
cache misses; :class:`RankIndex` counts through the same per-feature bucket index as the
ECOD and COPOD scorers (:mod:`adp.detect.ecdf`): the value's bucket, where it starts, and
the few training scores in it. Every bucket is checked against the sorted scores, so the
counts equal ``searchsorted``'s exactly, missing values included (counted after every
training score); training scores that are not all finite are counted by ``searchsorted``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from adp.detect.ecdf import _bucket_of, _choose_bucket_map, n_buckets
from adp.detect.ecdf_kernels import NB, PAD, _feature_counts

__all__ = ["RankIndex"]

_CHUNK = 65_536  # values counted at a time (the kernel's scratch arrays)


@njit(cache=True, nogil=True)
def _count_kernel(
    xs: np.ndarray,
    col: np.ndarray,
    n: int,
    starts: np.ndarray,
    bucket_map: np.ndarray,
    lo: float,
    hi: float,
    right_at_lo: int,
    left_at_hi: int,
    out: np.ndarray,
) -> None:  # pragma: no cover
    """``out[i]`` = training values ``<= xs[i]``, chunk by chunk."""
    m = xs.shape[0]
    size = min(m, _CHUNK)
    scaled = np.empty(size)
    scaled_keys = scaled.view(np.int64)
    k_right = np.empty(size, dtype=np.int64)
    k_left = np.empty(size, dtype=np.int64)
    for first in range(0, m, _CHUNK):
        c = min(m, first + _CHUNK) - first
        _feature_counts(
            xs[first : first + c],
            scaled,
            scaled_keys,
            k_right,
            k_left,
            col,
            n,
            starts,
            bucket_map,
            lo,
            hi,
            right_at_lo,
            left_at_hi,
        )
        out[first : first + c] = k_right[:c]


class RankIndex:
    """The bucket index of one sorted array of training scores.

    Parameters
    ----------
    sorted_scores : ndarray of shape (n,)
        The training scores, sorted ascending (``n >= 1``).

    Notes
    -----
    Built in milliseconds from the sorted scores; not meant to be pickled (rebuild it).
    """

    def __init__(self, sorted_scores: np.ndarray) -> None:
        col = np.ascontiguousarray(sorted_scores, dtype=np.float64)
        self.sorted_scores = col
        n = col.size
        self._compiled = n > 0 and bool(np.isfinite(col).all()) and n < np.iinfo(np.int32).max
        if not self._compiled:
            return
        padded = np.full(n + PAD, np.inf)
        padded[:n] = col
        self._padded = padded
        nb = n_buckets(n) if col[-1] > col[0] else 1
        self._map = _choose_bucket_map(col, nb)
        counts = np.bincount(_bucket_of(col, self._map), minlength=int(self._map[NB]))
        self._starts = np.zeros(int(self._map[NB]) + 1, dtype=np.int32)
        self._starts[1:] = np.cumsum(counts)
        self._right_at_lo = int(np.searchsorted(col, col[0], side="right"))
        self._left_at_hi = int(np.searchsorted(col, col[-1], side="left"))

    def count_at_or_below(self, values: Any) -> np.ndarray:
        """Training scores ``<= v`` for each value: ``searchsorted(sorted_scores, values,
        side="right")``, exactly.

        Parameters
        ----------
        values : array-like of float
            Scores to count for (any shape; NaN counts every training score).

        Returns
        -------
        ndarray of int64
            The counts, in the shape of ``values``.
        """
        xs = np.asarray(values, dtype=np.float64)
        if not self._compiled:
            return np.searchsorted(self.sorted_scores, xs, side="right").astype(np.int64)
        flat = np.ascontiguousarray(xs.reshape(-1))
        out = np.empty(flat.size, dtype=np.int64)
        if flat.size:
            n = self.sorted_scores.size
            _count_kernel(
                flat,
                self._padded,
                n,
                self._starts,
                self._map,
                float(self.sorted_scores[0]),
                float(self.sorted_scores[-1]),
                self._right_at_lo,
                self._left_at_hi,
                out,
            )
        return out.reshape(xs.shape)

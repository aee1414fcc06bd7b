"""The compiled kernels of :class:`adp.detect.ecdf.FrozenEcdfScorer` (numba; one thread,
``nogil``, no ``fastmath``).

For every cell they count the training values ``<= x`` and ``< x`` exactly (ties included)
through a per-feature bucket index, look ``-log`` of the tail probabilities up in a table of
the ``n + 1`` possible values and combine them as ECOD or COPOD does; see the docstring of
:mod:`adp.detect.ecdf` for the index and the layout of the work.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PAD = 8
"""+inf values after each sorted column; the first ``PAD`` values of a bucket are scanned."""

ROWS, CELLS, TAILS = 0, 1, 2
"""What a kernel call writes: row sums of the terms, the terms, or the tail ``-log``s."""

# Columns of a bucket map: buckets, log (0/1), origin, inverse width, center, scale, K(scale)
NB, LOG, ORIGIN, INV_WIDTH, CENTER, SCALE, KEY_SCALE = range(7)


# -- compiled kernels ------------------------------------------------------------------
#
# The index of feature j: ``col = cols[j]``, sorted and padded with +inf; ``starts[j, b]``
# (b = 0..nb) the number of training values whose bucket is below b. Equal values share a
# bucket, so a start always falls between runs of ties. For a cell ``x`` and a bucket
# ``[p, q] = starts[b:b + 2]``, both counts of ``x`` lie in ``[p, q]`` exactly when
# ``col[p - 1] < x < col[q]`` (the check at ``p = 0`` is vacuous, and col[n] is +inf): the
# kernels check that, and bisect the whole column for a cell where it fails.


@njit(cache=True, nogil=True)
def _upper_bound(col: np.ndarray, x: float, first: int, last: int) -> int:  # pragma: no cover
    """The first index in ``[first, last)`` whose value is ``> x`` (``last`` if none)."""
    base = first
    length = last - first
    if length <= 0:
        return first
    while length > 1:
        half = length >> 1
        base = base + half if col[base + half] <= x else base
        length -= half
    return base + 1 if col[base] <= x else base


@njit(cache=True, nogil=True)
def _lower_bound(col: np.ndarray, x: float, first: int, last: int) -> int:  # pragma: no cover
    """The first index in ``[first, last)`` whose value is ``>= x`` (``last`` if none)."""
    base = first
    length = last - first
    if length <= 0:
        return first
    while length > 1:
        half = length >> 1
        base = base + half if col[base + half] < x else base
        length -= half
    return base + 1 if col[base] < x else base


@njit(cache=True, nogil=True)
def _counts(
    x: float, col: np.ndarray, n: int, lo: float, hi: float, right_at_lo: int, left_at_hi: int
) -> tuple[int, int]:  # pragma: no cover
    """``(#train <= x, #train < x)`` for one cell by bisecting the whole column, exactly."""
    if x > lo:
        if x < hi:
            upper = _upper_bound(col, x, 1, n)  # col[0] = lo < x
            if col[upper - 1] == x:
                return upper, _lower_bound(col, x, 1, upper - 1)
            return upper, upper
        if x == hi:
            return n, left_at_hi
        return n, n
    if x == lo:
        return right_at_lo, 0
    if x < lo:
        return 0, 0
    return n, n  # NaN: np.searchsorted places it after every (finite) training value


@njit(cache=True, nogil=True)
def _feature_counts(
    xs: np.ndarray,
    scaled: np.ndarray,
    scaled_keys: np.ndarray,
    k_right: np.ndarray,
    k_left: np.ndarray,
    col: np.ndarray,
    n: int,
    starts: np.ndarray,
    bucket_map: np.ndarray,
    lo: float,
    hi: float,
    right_at_lo: int,
    left_at_hi: int,
) -> None:  # pragma: no cover
    """:func:`_counts` of every value of ``xs`` (one feature), through the bucket index.

    Two passes: the first reads only the bucket index, the second only the sorted column, so
    that within a pass no read waits for another and the cache misses of many cells overlap.
    ``scaled`` is scratch space, ``scaled_keys`` the same memory read as int64.
    """
    m = xs.shape[0]
    nb = int(bucket_map[NB])
    log_map = bucket_map[LOG] != 0
    origin, inv_width = bucket_map[ORIGIN], bucket_map[INV_WIDTH]
    center, scale, key_scale = bucket_map[CENTER], bucket_map[SCALE], bucket_map[KEY_SCALE]
    if log_map:
        for i in range(m):
            scaled[i] = abs(xs[i] - center) + scale
    for i in range(m):  # each cell's bucket [p, q]; p = -1 outside (lo, hi) and for NaN
        x = xs[i]
        if x > lo and x < hi:
            if log_map:
                t = float(scaled_keys[i]) - key_scale
                f = ((t if x >= center else -t) - origin) * inv_width
            else:
                f = (x - origin) * inv_width
            b = 0 if f < 0 else (int(f) if f < nb else nb - 1)
            k_right[i] = starts[b]
            k_left[i] = starts[b + 1]
        else:
            k_right[i] = -1
    for i in range(m):
        x = xs[i]
        p = k_right[i]
        q = k_left[i]
        if p < 0 or (p > 0 and col[p - 1] >= x) or col[q] <= x:
            # Outside (lo, hi), missing, or put in a neighbouring bucket by rounding
            k_right[i], k_left[i] = _counts(x, col, n, lo, hi, right_at_lo, left_at_hi)
            continue
        # Now col[p - 1] < x < col[q]. Count the first PAD values of the bucket without
        # branches (those past q, padding included, are > x and add nothing); bisect the rest
        # of a larger bucket only when all of them are <= x.
        upper = p
        for k in range(PAD):
            upper += 1 if col[p + k] <= x else 0
        if upper == p + PAD and q > upper:  # (a run of ties often fills its bucket)
            upper = q if col[q - 1] <= x else _upper_bound(col, x, upper, q)
        k_right[i] = upper
        # A tie with x ends at upper - 1 (at upper == p there is none: col[p - 1] < x, and at
        # upper == 0, col[-1] is the +inf padding), and starts at p when col[p] == x.
        if col[upper - 1] == x:
            k_left[i] = p if col[p] == x else _lower_bound(col, x, p, upper - 1)
        else:
            k_left[i] = upper


@njit(cache=True, nogil=True)
def _term(
    k_right: int,
    k_left: int,
    table: np.ndarray,
    left_coef: float,
    right_coef: float,
    one_lookup: bool,
    copod: bool,
) -> float:  # pragma: no cover
    """One cell's ECOD or COPOD term from its counts, with the reference's arithmetic."""
    n = table.shape[0] - 1
    if one_lookup:
        return table[min(k_right, n - k_left)]
    u_left = table[k_right]
    u_right = table[n - k_left]
    u_skew = u_left * left_coef + u_right * right_coef
    if copod:
        return max(u_skew, (u_left + u_right) / 2)
    return max(u_skew, max(u_left, u_right))


@njit(cache=True, nogil=True)
def score_kernel(
    X: np.ndarray,
    cols: np.ndarray,
    starts: np.ndarray,
    bucket_maps: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    right_at_lo: np.ndarray,
    left_at_hi: np.ndarray,
    table: np.ndarray,
    left_coef: np.ndarray,
    right_coef: np.ndarray,
    one_lookup: np.ndarray,
    copod: bool,
    chunk: int,
    mode: int,
    rows: np.ndarray,
    cells: np.ndarray,
    right: np.ndarray,
) -> None:  # pragma: no cover
    """Score ``X`` chunk by chunk, one feature at a time.

    ``mode`` says what is written: ``ROWS``, the row sums of the terms into ``rows``;
    ``CELLS``, the terms into ``cells``; ``TAILS``, ``-log`` of the left and right tail
    probabilities into ``cells`` and ``right``.
    """
    m, d = X.shape
    n = table.shape[0] - 1
    size = min(m, chunk)
    block = np.empty((d, size))
    scaled = np.empty(size)
    scaled_keys = scaled.view(np.int64)
    k_right = np.empty(size, dtype=np.int64)
    k_left = np.empty(size, dtype=np.int64)
    for first in range(0, m, chunk):
        c = min(m, first + chunk) - first
        for i in range(c):  # transpose the chunk: each feature's values contiguous
            for j in range(d):
                block[j, i] = X[first + i, j]
        if mode == ROWS:
            rows[first : first + c] = 0.0
        for j in range(d):
            _feature_counts(
                block[j, :c],
                scaled,
                scaled_keys,
                k_right,
                k_left,
                cols[j],
                n,
                starts[j],
                bucket_maps[j],
                lo[j],
                hi[j],
                right_at_lo[j],
                left_at_hi[j],
            )
            cl, cr, one = left_coef[j], right_coef[j], one_lookup[j]
            if mode == ROWS:
                for i in range(c):
                    rows[first + i] += _term(k_right[i], k_left[i], table, cl, cr, one, copod)
            elif mode == CELLS:
                for i in range(c):
                    cells[first + i, j] = _term(k_right[i], k_left[i], table, cl, cr, one, copod)
            else:
                for i in range(c):
                    cells[first + i, j] = table[k_right[i]]
                    right[first + i, j] = table[n - k_left[i]]


__all__ = [
    "CELLS",
    "CENTER",
    "INV_WIDTH",
    "KEY_SCALE",
    "LOG",
    "NB",
    "ORIGIN",
    "PAD",
    "ROWS",
    "SCALE",
    "TAILS",
    "score_kernel",
]

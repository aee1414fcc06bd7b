"""Trailing-window statistics over rows grouped by entity, computed row by row.

Each row's statistic is computed from an explicit ``(rows, window)`` matrix of its own
window (the row and up to ``window - 1`` earlier rows of the same entity), so it depends
only on those values, never on which other entities share the array or on how the rows
are chunked: the property that makes context features partition-invariant.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

#: Cells of one window matrix block (float64): bounds the memory of a block.
_BLOCK_CELLS = 2_000_000


def group_starts(codes: np.ndarray) -> np.ndarray:
    """For rows sorted by entity, the index of the first row of each row's entity."""
    n = len(codes)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    new = np.ones(n, dtype=bool)
    new[1:] = codes[1:] != codes[:-1]
    first = np.flatnonzero(new)
    return np.asarray(first[np.cumsum(new) - 1], dtype=np.int64)


def _window_matrix(values: np.ndarray, starts: np.ndarray, rows: slice, size: int) -> np.ndarray:
    idx = np.arange(rows.start, rows.stop)[:, None] - np.arange(size)[None, :]
    valid = idx >= starts[rows][:, None]
    return np.where(valid, values[np.maximum(idx, 0)], np.nan)


def rolling(values: np.ndarray, starts: np.ndarray, size: int, stat: str) -> np.ndarray:
    """One trailing-window statistic of ``values`` (rows sorted by entity, then time).

    Parameters
    ----------
    values : ndarray of shape (n,)
        The series, float64 (NaN is skipped inside a window).
    starts : ndarray of shape (n,)
        :func:`group_starts` of the entity codes.
    size : int
        Rows in the window (the current row included).
    stat : {"mean", "std", "min", "max", "median", "diff"}
        ``std`` is the population standard deviation (0 for a single row); ``diff`` the
        change from the entity's previous row (0 for its first row).

    Returns
    -------
    ndarray of shape (n,)
    """
    n = len(values)
    if stat == "diff":
        out = np.zeros(n)
        later = np.arange(n) > starts
        out[later] = values[later] - values[np.flatnonzero(later) - 1]
        return out
    reducers: dict[str, Callable[..., Any]] = {
        "mean": np.nanmean,
        "std": np.nanstd,
        "min": np.nanmin,
        "max": np.nanmax,
        "median": np.nanmedian,
    }
    reduce = reducers[stat]
    out = np.empty(n)
    step = max(1, _BLOCK_CELLS // size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window gives NaN
        for start in range(0, n, step):
            rows = slice(start, min(n, start + step))
            out[rows] = reduce(_window_matrix(values, starts, rows, size), axis=1)
    return out

"""Robust per-entity baselines: the median and MAD of each value column per phase of the
season (or over all of an entity's rows without one), fitted one entity per task.

Every function here works on one partition that holds *whole* entities (the frame is
shuffled by entity first, :mod:`adp.context.fitted`), so the statistics are exact: the
median of an entity's values at a phase is the same whatever partitioning the data came
in, and the partitions' results only need to be put side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from adp.context.spec import MAX_BINS
from adp.errors import DataError

#: MAD to standard deviation, for normal data.
MAD_TO_STD = 1.4826
MEAN_AD_TO_STD = 1.2533
"""sqrt(pi / 2): a normal variable's mean absolute deviation times this is its std."""
#: Phases pooled on each side of a phase when its median is fitted (smooths the profile).
POOL = 1


def as_nanoseconds(times: pd.Series, column: str) -> np.ndarray:
    """Datetimes as int64 nanoseconds (wall-clock time for time-zone aware columns).

    Raises
    ------
    adp.errors.DataError
        Naming ``column`` when it is not a datetime column or holds missing times.
    """
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_localize(None)
    if not pd.api.types.is_datetime64_any_dtype(times.dtype):
        raise DataError(
            f"context.time: column {column!r} is of type {times.dtype}, not a datetime; "
            "parse it (for CSV: adp.read(..., parse_dates=[...])) or drop the season"
        )
    if times.isna().any():
        raise DataError(
            f"context.time: column {column!r} has {int(times.isna().sum())} missing times; "
            "drop those rows first"
        )
    return np.asarray(times.to_numpy(dtype="datetime64[ns]").view("i8"))


def phases(times: pd.Series, column: str, width: int, bins: int) -> np.ndarray:
    """The phase of each time: ``(t // width) % bins`` with ``t`` in nanoseconds."""
    if bins <= 1:
        return np.zeros(len(times), dtype=np.int64)
    return np.asarray((as_nanoseconds(times, column) // width) % bins, dtype=np.int64)


def step_counts(times: pd.Series, codes: np.ndarray, column: str) -> pd.Series:
    """How often each time step (ns) occurs between consecutive rows of one entity, for
    rows sorted by entity then time."""
    t = as_nanoseconds(times, column)
    same = codes[1:] == codes[:-1]
    steps = (t[1:] - t[:-1])[same]
    return pd.Series(steps[steps > 0]).value_counts()


def choose_bins(counts: Sequence[pd.Series], period: int) -> int:
    """Phases per period: the period over the most common step (the smallest on ties)."""
    total = pd.concat([c for c in counts if len(c)]) if any(len(c) for c in counts) else None
    if total is None:
        return 1
    summed = total.groupby(level=0).sum().sort_index()
    step = int(summed.idxmax())
    return int(min(MAX_BINS, max(1, round(period / step))))


@dataclass(frozen=True)
class Profile:
    """The baselines of some entities.

    Attributes
    ----------
    entities : ndarray
        The entity values, sorted.
    center : ndarray of shape (entities, bins, columns)
        Median of each column per entity and phase.
    scale : ndarray of shape (entities, bins, columns)
        Robust scale (1.4826 MAD) per entity and phase, floored at half the entity's
        overall residual scale (and at a tiny multiple of its level, never zero).
    spread : ndarray of shape (entities, columns)
        Robust scale of each entity's residuals over all its rows (1.4826 times their
        median absolute value, or 1.2533 times their mean where that median is 0:
        :func:`robust_spread`), floored like ``scale``.
    """

    entities: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    spread: np.ndarray


def robust_spread(median_abs: np.ndarray, mean_abs: np.ndarray) -> np.ndarray:
    """The robust scale of residuals from their median and mean absolute values.

    1.4826 times the median absolute residual; where that is 0 (more than half the
    residuals are 0, as in a mostly constant series), 1.2533 times the mean absolute
    residual instead (Iglewicz and Hoaglin's modified z-score). Without it such an
    entity's scale fell to the tiny floor and an ordinary nonzero reading became a residual
    of 1e14, out of all proportion to every other entity's.
    """
    by_median = np.asarray(median_abs, dtype=np.float64) * MAD_TO_STD
    return np.where(by_median > 0, by_median, np.asarray(mean_abs) * MEAN_AD_TO_STD)


def _grouped_mean(values: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    mean = pd.DataFrame(values).groupby(groups, sort=True).mean()
    return np.asarray(mean.reindex(range(size)).to_numpy(dtype=np.float64))


def _grouped_median(values: np.ndarray, groups: np.ndarray, size: int) -> np.ndarray:
    frame = pd.DataFrame(values)
    med = frame.groupby(groups, sort=True).median()
    return np.asarray(med.reindex(range(size)).to_numpy(dtype=np.float64))


def fit_partition(
    X: np.ndarray, codes: np.ndarray, entities: np.ndarray, phase: np.ndarray, bins: int
) -> Profile:
    """The profile of the whole entities of one partition.

    Parameters
    ----------
    X : ndarray of shape (n, columns)
        Value columns (NaN is skipped).
    codes : ndarray of shape (n,)
        Each row's entity, an index into ``entities`` (sorted).
    entities : ndarray
        The partition's entities, sorted.
    phase : ndarray of shape (n,)
        Each row's phase, in ``[0, bins)``.
    bins : int
        Phases per period (1 without a season).
    """
    k, c = len(entities), X.shape[1]
    cells = k * bins
    pool = POOL if bins >= 2 * POOL + 1 else 0
    shifts = range(-pool, pool + 1)
    groups = np.concatenate([codes * bins + (phase + s) % bins for s in shifts])
    stacked = np.vstack([X] * len(shifts))
    center = _grouped_median(stacked, groups, cells)
    deviation = np.abs(stacked - center[groups])
    mad = _grouped_median(deviation, groups, cells) * MAD_TO_STD

    level = _grouped_median(X, codes, k)  # (k, c): each entity's median
    center = center.reshape(k, bins, c)
    center = np.where(np.isnan(center), level[:, None, :], center)
    residual = np.abs(X - center[codes, phase])
    spread = robust_spread(  # (k, c)
        _grouped_median(residual, codes, k), _grouped_mean(residual, codes, k)
    )
    tiny = np.nan_to_num(1e-6 * np.maximum(1.0, np.abs(level)), nan=1e-6)
    spread = np.maximum(np.nan_to_num(spread), tiny)
    floor = 0.5 * spread
    scale = mad.reshape(k, bins, c)
    scale = np.where(np.isnan(scale), floor[:, None, :], np.maximum(scale, floor[:, None, :]))
    return Profile(entities, center, scale, spread)


def combine(profiles: Sequence[Profile], bins: int, columns: int) -> Profile:
    """The profiles of disjoint sets of entities as one, entities sorted, plus a last row:
    the per-phase median over entities (the baseline of entities unseen at fit time)."""
    parts = [p for p in profiles if len(p.entities)]
    if not parts:
        raise DataError("context: the training data has no rows to fit a baseline on")
    entities = np.concatenate([p.entities for p in parts])
    order = np.asarray(pd.Index(entities).argsort())
    center = np.concatenate([p.center for p in parts])[order]
    scale = np.concatenate([p.scale for p in parts])[order]
    spread = np.concatenate([p.spread for p in parts])[order]
    return Profile(
        entities[order],
        np.concatenate([center, np.nanmedian(center, axis=0, keepdims=True)]),
        np.concatenate([scale, np.nanmedian(scale, axis=0, keepdims=True)]),
        np.concatenate([spread, np.nanmedian(spread, axis=0, keepdims=True)]),
    )

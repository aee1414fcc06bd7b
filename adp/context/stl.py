"""STL seasonal baselines: ``season: {period: 1d, method: stl}``.

At fit time each entity's series is decomposed with statsmodels' robust STL (Cleveland
et al. 1990; ``pip install 'adp[timeseries]'``) into trend, seasonal and remainder, and the
decomposition is summarised into the same per-entity, per-phase table as the robust
profile (:class:`~adp.context.profile.Profile`):

- ``center[entity, phase]``: the median of the STL trend (the entity's typical level) plus
  the median of the seasonal component at that phase over the training cycles;
- ``spread[entity]``: the robust scale (:func:`adp.context.profile.robust_spread`) of the
  residuals from that baseline at the entity's observed rows, ``scale[entity, phase]`` the
  same per phase, floored at half of ``spread`` (and both at a tiny multiple of the level):
  the profile's definitions, so ``normalise`` means the same with either method.

So scoring a new row stays a lookup of its entity and phase: frozen, partition-invariant,
the same in batch and stream, and statsmodels is needed only to fit.

Compared with the profile (the median of the raw values per phase, pooled with the
neighbouring phases), the seasonal shape is a LOESS fit across cycles and phases from which
the trend has been removed and whose outliers were down-weighted (robust STL): a smoother,
less noisy baseline when the history holds few cycles, and one that an anomalous cycle or
a level shift bends less. The trend itself is not extrapolated: a new row is compared with
the training level, so a level that keeps drifting shows up in the residual (and its window
``diff``) until the detector is refitted. Why the scale is not the STL remainder's: a row
is scored against the frozen baseline, not against the trend at its own time (unknown for
new rows), so the remainder's scale (the noise around the trend) would understate how far
ordinary training rows lie from the baseline, and an entity with a trend would look
anomalous throughout, next to entities without one.

**The grid and gaps.** STL needs a regularly sampled series. An entity's rows are placed on
the phase grid (slot ``t // width``, ``width = period / bins``, phase ``slot % bins``) at
the entity's own step: the most common number of slots between its rows when that divides
``bins`` (in a fleet of 5-minute and 30-minute series, ``bins`` is 288 and the 30-minute
ones are decomposed with a period of 48 samples, their seasonal shape then interpolated
around the circle onto the 288 phases). Rows sharing a step are summarised by their median.
An outage longer than one period splits the series into stretches, each decomposed on its
own (nothing is invented across an outage; stretches shorter than two periods are left out
of the decomposition); inside a stretch, empty steps are filled by linear interpolation for
the STL fit only. The seasonal shape and the level are medians over observed steps, and
the scales are measured on all observed rows. An entity is refused
(:class:`~adp.errors.DataError` naming it) when no stretch spans two periods, or when more
than half of a stretch's steps are empty (irregular or sparse sampling): lower
``season.bins`` or use ``method: profile`` there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from adp.context.profile import MAD_TO_STD, Profile, robust_spread
from adp.errors import ConfigError, DataError

__all__ = [
    "MAX_GAP_SHARE",
    "MIN_PERIODS",
    "decompose",
    "fit_entity_column",
    "fit_stl_partition",
    "require_stl",
]

#: The least periods an entity's series must span.
MIN_PERIODS = 2
#: The largest share of a stretch's grid steps that may be empty (filled by interpolation).
MAX_GAP_SHARE = 0.5
#: Length of STL's seasonal smoother (odd; statsmodels' default).
SEASONAL = 7
#: LOESS evaluated every ``ceil(JUMP * window)`` points and interpolated between (the
#: original STL's default; ~50 times faster than every point on a daily period of 288).
JUMP = 0.1
INSTALL_HINT = "pip install 'adp[timeseries]'"


def require_stl() -> Any:
    """statsmodels' ``STL`` class, or a ConfigError with the install hint."""
    try:
        from statsmodels.tsa.seasonal import STL
    except ImportError as exc:
        raise ConfigError(
            f"context.season.method: stl needs statsmodels, which is not installed: "
            f"{INSTALL_HINT} (or use method: profile)"
        ) from exc
    return STL


def _odd(value: float) -> int:
    n = int(math.ceil(value))
    return n + 1 if n % 2 == 0 else n


def decompose(series: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust STL of a regularly sampled, gap-free series.

    Parameters
    ----------
    series : ndarray of shape (n,)
        At least ``2 * period`` finite values.
    period : int
        Samples per period, at least 2.

    Returns
    -------
    tuple of ndarray
        ``(trend, seasonal, remainder)``, each of shape ``(n,)``.
    """
    stl_class = require_stl()
    trend = _odd(1.5 * period / (1 - 1.5 / SEASONAL))
    low_pass = _odd(period + 1)

    def jump(window: int) -> int:
        return max(1, int(math.ceil(JUMP * window)))

    result = stl_class(
        np.asarray(series, dtype=np.float64),
        period=period,
        seasonal=SEASONAL,
        trend=trend,
        low_pass=low_pass,
        robust=True,
        seasonal_jump=jump(SEASONAL),
        trend_jump=jump(trend),
        low_pass_jump=jump(low_pass),
    ).fit()
    return (
        np.asarray(result.trend, dtype=np.float64),
        np.asarray(result.seasonal, dtype=np.float64),
        np.asarray(result.resid, dtype=np.float64),
    )


def _stride(slots: np.ndarray, bins: int) -> int:
    """The entity's own sampling step in slots: the most common step between its rows
    (the smallest on ties) when it divides ``bins`` into at least 2 samples, else 1."""
    steps = np.diff(np.unique(slots))
    if not len(steps):
        return 1
    values, counts = np.unique(steps, return_counts=True)
    step = int(values[np.argmax(counts)])
    return step if step > 1 and bins % step == 0 and bins // step >= 2 else 1


def _stretches(observed: np.ndarray, period: int) -> list[np.ndarray]:
    """The observed steps (sorted) split wherever more than one period has no row."""
    cuts = np.flatnonzero(np.diff(observed) > period) + 1
    return np.split(observed, cuts)


def _decompose_stretch(
    per_step: pd.Series, observed: np.ndarray, period: int, where: str
) -> tuple[np.ndarray, np.ndarray]:
    """Trend and seasonal at the ``observed`` steps of one stretch (gaps interpolated)."""
    lo, hi = int(observed[0]), int(observed[-1])
    length = hi - lo + 1
    empty = 1 - len(observed) / length
    if empty > MAX_GAP_SHARE:
        raise DataError(
            f"context.season.method stl: {where} has no rows in {empty:.0%} of the "
            f"{length} steps of its grid (more than {MAX_GAP_SHARE:.0%}): irregular or "
            "sparse sampling; lower context.season.bins, or use method: profile"
        )
    full = per_step.reindex(range(lo, hi + 1)).interpolate(method="linear")
    trend, seasonal, _ = decompose(full.to_numpy(dtype=np.float64), period)
    at = observed - lo
    return trend[at], seasonal[at]


def _components(
    steps: np.ndarray, values: np.ndarray, period: int, where: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(observed steps, trend, seasonal)`` of the stretches of at least two periods."""
    per_step = pd.Series(values).groupby(steps).median()
    observed = np.asarray(per_step.index, dtype=np.int64)
    found = [
        (stretch, *_decompose_stretch(per_step, stretch, period, where))
        for stretch in _stretches(observed, period)
        if stretch[-1] - stretch[0] + 1 >= MIN_PERIODS * period
    ]
    if not found:
        raise DataError(
            f"context.season.method stl: {where} has no stretch of {MIN_PERIODS} periods "
            f"({MIN_PERIODS * period} samples at its step) without a gap longer than a "
            "period; give it more history, or use method: profile"
        )
    return (
        np.concatenate([f[0] for f in found]),
        np.concatenate([f[1] for f in found]),
        np.concatenate([f[2] for f in found]),
    )


def _scale(residual: np.ndarray, groups: np.ndarray | None, size: int) -> np.ndarray:
    absolute = pd.Series(np.abs(residual))
    if groups is None:
        return np.asarray([absolute.median() * MAD_TO_STD])
    med = absolute.groupby(groups).median().reindex(range(size))
    return np.asarray(med.to_numpy(dtype=np.float64)) * MAD_TO_STD


def fit_entity_column(
    slots: np.ndarray, values: np.ndarray, bins: int, where: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """STL baseline of one entity's column: ``(center, scale, spread, level)`` with
    ``center`` and ``scale`` of shape ``(bins,)`` (scale before its floors).

    ``slots`` are the rows' grid slots (``t // width``); NaN values are gaps. ``scale``
    and ``spread`` are robust scales of the rows' residuals from ``center``.
    """
    ok = ~np.isnan(values)
    if not ok.any():
        nan = np.full(bins, np.nan)
        return nan, nan.copy(), math.nan, math.nan
    slots, values = slots[ok], values[ok]
    first = int(slots.min())
    stride = _stride(slots, bins)  # an entity sampled every 30 minutes of 5-minute bins: 6
    period = bins // stride
    steps = np.rint((slots - first) / stride).astype(np.int64)
    observed, trend, seasonal = _components(steps, values, period, where)
    level = float(np.median(trend))
    grid_phase = (first + observed * stride) % bins
    shape = pd.Series(seasonal).groupby(grid_phase).median()
    known = np.asarray(shape.index, dtype=np.float64)
    # phases between the entity's samples (stride > 1): interpolated around the circle
    center = level + np.interp(np.arange(bins), known, shape.to_numpy(), period=bins)
    phase = slots % bins
    residual = values - center[phase]
    absolute = np.abs(residual[~np.isnan(residual)])
    spread = (
        float(robust_spread(np.median(absolute), np.mean(absolute))) if absolute.size else math.nan
    )
    return center, _scale(residual, phase, bins), spread, level


def fit_stl_partition(
    X: np.ndarray,
    codes: np.ndarray,
    entities: np.ndarray,
    slots: np.ndarray,
    bins: int,
    columns: Sequence[str],
) -> Profile:
    """The STL profile of the whole entities of one partition.

    Parameters
    ----------
    X : ndarray of shape (n, columns)
        Value columns (NaN: a gap).
    codes : ndarray of shape (n,)
        Each row's entity, an index into ``entities`` (sorted); rows sorted by entity.
    entities : ndarray
        The partition's entities, sorted.
    slots : ndarray of shape (n,)
        Each row's grid slot, ``t // width`` with ``t`` in nanoseconds.
    bins : int
        Phases per period (the STL period in samples), at least 2.
    columns : sequence of str
        The names of ``X``'s columns (for errors).

    Returns
    -------
    Profile
        Laid out as :func:`adp.context.profile.fit_partition`'s.

    Raises
    ------
    adp.errors.DataError
        With fewer than 2 phases per period, or naming an entity whose series is too short
        or too sparse for STL.
    """
    if bins < 2:
        raise DataError(
            "context.season.method stl: the data's time step is as long as the period, so "
            "there is one phase per period; STL needs at least 2 (set context.season.bins)"
        )
    k, c = len(entities), X.shape[1]
    center = np.full((k, bins, c), np.nan)
    scale = np.full((k, bins, c), np.nan)
    spread = np.full((k, c), np.nan)
    level = np.full((k, c), np.nan)
    bounds = np.searchsorted(codes, np.arange(k + 1))
    for e in range(k):
        rows = slice(bounds[e], bounds[e + 1])
        for j in range(c):
            where = f"entity {entities[e]!r} (column {columns[j]!r})"
            center[e, :, j], scale[e, :, j], spread[e, j], level[e, j] = fit_entity_column(
                slots[rows], X[rows, j], bins, where
            )
    tiny = np.nan_to_num(1e-6 * np.maximum(1.0, np.abs(level)), nan=1e-6)
    spread = np.maximum(np.nan_to_num(spread), tiny)
    floor = 0.5 * spread
    scale = np.where(np.isnan(scale), floor[:, None, :], np.maximum(scale, floor[:, None, :]))
    return Profile(entities, center, scale, spread)

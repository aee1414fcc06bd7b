"""Matrix-profile discords with STUMPY: the subsequences of a long series least like any
other (``pip install 'adp[timeseries]'``).

The matrix profile of a series ``T`` and a window ``m`` gives, for every window of ``m``
consecutive values, the z-normalised Euclidean distance to its nearest neighbour: in ``T``
itself away from the window's trivial neighbours (a *self-join*), or in a reference series
(an *AB-join*). A window far from every other one is a *discord*: a shape the series does
not repeat, whatever its level. Three ways to use it:

- :func:`discord_scores`: one long series, self-join, computed across the Dask cluster
  with :func:`stumpy.stumped` when a ``client`` is given (exactly the values of the
  single-process :func:`stumpy.stump`); per-row scores for batch analysis of a history.
- :class:`DiscordModel`: frozen. Fitted on a training series, it scores new rows by the
  AB-join of each row's trailing window against the training series only, so a row's
  score depends on the model and on its own window (the row and its ``m - 1``
  predecessors), never on later rows, batch boundaries or partitioning: the same in a
  batch job and a stream given the same preceding rows.
- :func:`discord_frame`: a fleet of series in a Dask frame (``by``), one self-join per
  entity inside partition tasks (the frame is shuffled so each partition holds whole
  entities, as for the context features), a lazy column of per-row scores.

**Per-row scores.** A matrix profile has one value per window; ``align="end"`` (the
default) gives a row the value of the window that ends at the row (causal: the row and its
predecessors only, as the frozen model must; the first ``m - 1`` rows of a series have no
full window and score NaN), ``align="cover"`` the largest value of the windows that contain
it (every row of a discord scores high, and the top rows lie on the anomalous shape).
Windows holding a missing value score NaN. On NAB (35 series, the top 1% of each series'
rows flagged, one-hour windows), ``end`` found 41 of the 55 labelled windows and ``cover``
24: ``cover`` spends the flag budget on the ``m`` rows of one discord.

**Cost.** A join is ``O(n_A * n_B)`` distance updates (STUMPY's STOMP); the first call in
each process compiles STUMPY's Numba kernels (tens of seconds), later calls are fast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.context.fitted import by_entity, check_columns, sort_rows
from adp.context.spec import Context
from adp.errors import ConfigError, DataError

__all__ = [
    "DiscordModel",
    "discord_frame",
    "discord_scores",
    "matrix_profile",
    "row_scores",
    "top_discords",
]

ALIGN = ("cover", "end")
INSTALL_HINT = "pip install 'adp[timeseries]'"
#: The shortest window STUMPY accepts.
MIN_WINDOW = 3


def require_stumpy() -> Any:
    """The ``stumpy`` module, or a ConfigError with the install hint."""
    try:
        import stumpy
    except ImportError as exc:
        raise ConfigError(f"discords need stumpy, which is not installed: {INSTALL_HINT}") from exc
    return stumpy


def _window(m: object) -> int:
    if isinstance(m, bool) or not isinstance(m, int | np.integer):
        raise ConfigError(f"discords: m (the window in rows) must be a whole number, got {m!r}")
    if m < MIN_WINDOW:
        raise ConfigError(f"discords: m must be at least {MIN_WINDOW} rows, got {m}")
    return int(m)


def _align(align: str) -> str:
    if align not in ALIGN:
        raise ConfigError(f"discords: align {align!r} is not one of {', '.join(ALIGN)}")
    return align


def _series(values: Any, m: int, what: str, least: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"discords: the {what} series is not numeric") from None
    if array.ndim != 1:
        raise DataError(f"discords: the {what} series must be one-dimensional, got {array.shape}")
    if len(array) < least:
        raise DataError(
            f"discords: the {what} series has {len(array)} values; a window of m={m} needs "
            f"at least {least} (shorten m or give more rows)"
        )
    return array


def matrix_profile(values: Any, m: int, *, reference: Any = None, client: Any = None) -> np.ndarray:
    """The matrix profile of ``values`` with windows of ``m`` rows.

    Parameters
    ----------
    values : array-like of shape (n,)
        The series (float; NaN marks a missing value).
    m : int
        Rows per window, at least 3.
    reference : array-like, optional
        Join against this series instead (AB-join: each window's nearest neighbour in
        ``reference``, no exclusion zone). ``None``: a self-join of ``values``, excluding
        each window's trivial neighbours (``m / 4`` windows either side, STUMPY's rule).
    client : distributed.Client, optional
        Compute with :func:`stumpy.stumped` on this cluster; ``None``: :func:`stumpy.stump`
        in this process. Both give the same values.

    Returns
    -------
    ndarray of shape (n - m + 1,)
        Distance of each window to its nearest neighbour; NaN for windows with a missing
        value.

    Raises
    ------
    adp.errors.ConfigError
        For an invalid ``m``, or when stumpy is not installed (with the install hint).
    adp.errors.DataError
        When a series is too short for ``m`` (a self-join needs ``2 * m`` values).
    """
    m = _window(m)
    stumpy = require_stumpy()
    if reference is None:
        series = _series(values, m, "input", 2 * m)
        args: dict[str, Any] = {"ignore_trivial": True}
    else:
        series = _series(values, m, "input", m)
        args = {"T_B": _series(reference, m, "reference", m), "ignore_trivial": False}
    with warnings.catch_warnings():
        # STUMPY suggests ignore_trivial=True when many distances are ~0: a series that
        # repeats exactly (a clean signal); this self-join already sets it
        warnings.filterwarnings("ignore", "A large number of values in `P` are smaller")
        if client is None:
            out = stumpy.stump(series, m, **args)
        else:
            out = stumpy.stumped(client, series, m, **args)
    profile = np.asarray(out[:, 0], dtype=np.float64)
    profile[~np.isfinite(profile)] = np.nan
    return profile


def row_scores(profile: np.ndarray, m: int, align: str = "end") -> np.ndarray:
    """Per-row scores of a series of ``len(profile) + m - 1`` rows from its matrix profile.

    Parameters
    ----------
    profile : ndarray of shape (windows,)
        A matrix profile (NaN: a window that cannot be scored).
    m : int
        Rows per window.
    align : {"cover", "end"}
        ``cover``: each row gets the largest value of the windows that contain it;
        ``end``: the value of the window ending at the row (NaN for the first ``m - 1``).

    Returns
    -------
    ndarray of shape (windows + m - 1,)
    """
    m, align = _window(m), _align(align)
    profile = np.asarray(profile, dtype=np.float64)
    pad = np.full(m - 1, np.nan)
    if align == "end":
        return np.concatenate([pad, profile])
    padded = pd.Series(np.concatenate([profile, pad]))
    return np.asarray(padded.rolling(m, min_periods=1).max().to_numpy(dtype=np.float64))


def discord_scores(values: Any, m: int, *, client: Any = None, align: str = "end") -> np.ndarray:
    """Per-row discord scores of one series from its self-join matrix profile.

    Parameters
    ----------
    values : array-like of shape (n,)
        The series, in time order (at least ``2 * m`` values).
    m : int
        Rows per window: about the length of the shapes that should be compared (one
        cycle of the series' pattern is a good start).
    client : distributed.Client, optional
        Compute the matrix profile on this cluster (:func:`stumpy.stumped`).
    align : {"cover", "end"}
        See :func:`row_scores`.

    Returns
    -------
    ndarray of shape (n,)
        Higher for rows of shapes the series does not repeat.

    Examples
    --------
    >>> t = np.arange(2_000)
    >>> x = np.sin(2 * np.pi * t / 100)
    >>> x[1_230:1_240] += 1.5
    >>> scores = discord_scores(x, 100, align="cover")  # each row of the top window
    >>> bool(scores[1_230:1_240].max() == np.nanmax(scores))
    True
    """
    return row_scores(matrix_profile(values, m, client=client), m, align)


def top_discords(profile: np.ndarray, m: int, k: int = 1) -> np.ndarray:
    """The start rows of the ``k`` highest windows of a matrix profile, no two within
    ``m`` rows of each other (fewer when the profile runs out).

    Parameters
    ----------
    profile : ndarray of shape (windows,)
        A matrix profile.
    m : int
        Rows per window (the exclusion zone around each chosen discord).
    k : int
        How many discords.

    Returns
    -------
    ndarray of int
        Window starts, highest first.
    """
    m = _window(m)
    left = np.asarray(profile, dtype=np.float64).copy()
    left[np.isnan(left)] = -np.inf
    found: list[int] = []
    while len(found) < k and np.isfinite(left).any():
        start = int(np.argmax(left))
        found.append(start)
        left[max(0, start - m + 1) : start + m] = -np.inf
    return np.asarray(found, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class DiscordModel:
    """A frozen discord scorer: new rows against a fitted training series.

    Attributes
    ----------
    m : int
        Rows per window.
    reference : ndarray
        The training series.
    train_scores : ndarray
        The training rows' own scores (self-join, ``align="end"``), as PyOD's
        ``decision_scores_``: a threshold is a quantile of these.
    """

    m: int
    reference: np.ndarray
    train_scores: np.ndarray

    @classmethod
    def fit(cls, values: Any, m: int, *, client: Any = None) -> DiscordModel:
        """Keep ``values`` (the training series, in time order) as the reference.

        Raises
        ------
        adp.errors.ConfigError, adp.errors.DataError
            As :func:`matrix_profile`.
        """
        m = _window(m)
        reference = _series(values, m, "training", 2 * m).copy()
        scores = row_scores(matrix_profile(reference, m, client=client), m, "end")
        return cls(m=m, reference=reference, train_scores=scores)

    def score(self, values: Any, *, history: Any = None, client: Any = None) -> np.ndarray:
        """Scores of new rows: the distance from each row's trailing window to its nearest
        neighbour in the training series.

        Parameters
        ----------
        values : array-like of shape (n,)
            New rows, in time order.
        history : array-like, optional
            The rows just before ``values`` (their last ``m - 1`` are used), so the first
            rows of ``values`` have full windows; without it they score NaN.
        client : distributed.Client, optional
            Compute the AB-join on this cluster.

        Returns
        -------
        ndarray of shape (n,)
        """
        m = self.m
        new = _series(values, m, "input", 0)
        before = np.empty(0) if history is None else _series(history, m, "history", 0)
        before = before[len(before) - min(len(before), m - 1) :]
        series = np.concatenate([before, new])
        if len(series) < m:
            return np.full(len(new), np.nan)
        profile = matrix_profile(series, m, reference=self.reference, client=client)
        return row_scores(profile, m, "end")[len(before) :]


def _entity_scores(
    part: pd.DataFrame, context: Context, column: str, m: int, align: str
) -> pd.Series:
    part = sort_rows(part, context, [column])
    values = part[column].to_numpy(dtype=np.float64, na_value=np.nan)
    out = np.full(len(part), np.nan)
    if context.by is None:
        bounds = [0, len(part)]
    else:
        entity = part[context.by].to_numpy()
        change = np.flatnonzero(entity[1:] != entity[:-1]) + 1
        bounds = [0, *change.tolist(), len(part)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi - lo >= 2 * m:
            out[lo:hi] = discord_scores(values[lo:hi], m, align=align)
    return pd.Series(out, index=part.index, name=f"{column}.discord_{m}")


def discord_frame(
    ddf: dd.DataFrame,
    column: str,
    m: int,
    *,
    time: str,
    by: str | None = None,
    align: str = "end",
) -> dd.Series:
    """Per-row discord scores of every entity's series in a Dask frame, lazily.

    The frame is shuffled so each partition holds whole entities (as for the context
    features, :mod:`adp.context.fitted`), and each entity's series, in ``time`` order, is
    self-joined in its partition's task: one task per partition, scores independent of the
    input partitioning. An entity with fewer than ``2 * m`` rows scores NaN.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        Rows with the ``time``, ``by`` and ``column`` columns.
    column : str
        The numeric value column.
    m : int
        Rows per window.
    time : str
        The column that orders each entity's rows.
    by : str, optional
        The entity column; ``None``: the whole frame is one series (one partition).
    align : {"cover", "end"}
        See :func:`row_scores`.

    Returns
    -------
    dask.dataframe.Series
        Float scores named ``{column}.discord_{m}``, on the input rows' index (grouped by
        entity, so join back on the index).

    Raises
    ------
    adp.errors.DataError
        Naming a missing column.
    """
    m, align = _window(m), _align(align)
    require_stumpy()
    context = Context(time=time, by=by)
    check_columns(ddf, context, [column])
    if column not in ddf.columns:
        raise DataError(f"discords: column {column!r} is not in the data")
    frame = by_entity(ddf[[*context.used_columns(), column]], context)
    meta = pd.Series(np.empty(0, dtype=np.float64), name=f"{column}.discord_{m}")
    meta.index = ddf._meta.index[:0]
    args = (context, column, m, align)
    return frame.map_partitions(_entity_scores, *args, meta=meta, align_dataframes=False)

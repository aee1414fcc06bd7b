"""A model fitted with a context (:mod:`adp.context`), scored on a stream.

Categorical and text encodings are row-wise: an event's categorical and text fields
(strings) are encoded as the batch path encodes a row.

Such a model's features are not event fields: they are each reading's residual from its
entity's seasonal baseline (``temperature.diff_from_season``), computed from the entity
(``context.by``), the time (``context.time``) and the value columns. Without a rolling
``context.window`` that residual depends on the row alone (its entity's median and robust
scale at its phase of the season, frozen at fit time), so a stream computes it per event,
with the batch path's own code (:meth:`~adp.context.fitted.FittedContext.transform_partition`),
and an event's score equals the batch score of the same row.

Event times are ISO 8601 text or Unix epoch seconds, read as UTC (a batch column without a
time zone is taken as UTC wall-clock time as well). A rolling ``context.window`` needs each
entity's earlier rows, which a stream does not keep for a context: such a model is refused
when the stream starts (:func:`check_streamable`), naming the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from adp.errors import SpecError

__all__ = ["add_context", "check_streamable", "stream_inputs"]


def _fitted_context(detector: Any) -> Any:
    return getattr(detector, "context_", None)


def stream_inputs(detector: Any) -> tuple[list[str], list[str]]:
    """The event fields a fitted detector reads: numeric ones, and others (entity, time).

    Returns
    -------
    numeric : list of str
        Fields decoded as numbers: the model's features, or its context's value columns.
    other : list of str
        Fields carried as they are: the context's ``by`` and ``time``, and the categorical
        and text columns it encodes (empty without a context).
    """
    fitted = _fitted_context(detector)
    if fitted is None:
        return list(detector.features_), []
    encodings = getattr(fitted, "encodings", None)
    encoded = list(encodings.columns) if encodings is not None else []
    used = fitted.context.used_columns() if getattr(fitted, "temporal", True) else []
    return list(fitted.columns), list(dict.fromkeys([*used, *encoded]))


def check_streamable(detector: Any, ref: str, *, windows: bool = False) -> None:
    """Refuse a model a stream cannot score exactly, naming the field at fault.

    Parameters
    ----------
    detector : BaseDetector
        Fitted.
    ref : str
        How to name the model in the message (``name@version``).
    windows : bool
        Whether the stream spec has a ``window`` section.

    Raises
    ------
    adp.errors.SpecError
        For a context with a rolling ``window``, or a context together with the stream's
        own ``window`` features.
    """
    fitted = _fitted_context(detector)
    if fitted is None:
        return
    if getattr(fitted, "temporal", True) and fitted.context.window is not None:
        raise SpecError(
            f"model {ref} was fitted with context.window (rolling features over each "
            "entity's earlier rows), which a stream cannot compute per event: fit it with a "
            "context without 'window' (season and normalise only) to stream it"
        )
    if windows:
        raise SpecError(
            f"window: model {ref} computes its own context features; a stream window's "
            "features would not be the model's: leave the stream's 'window' section out"
        )


def _times(values: pd.Series, name: str) -> tuple[pd.Series, list[tuple[int, str]]]:
    """Event times as UTC datetimes; the positions that are not times, with the reason."""
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    numbers = values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
    texts = values.map(lambda v: isinstance(v, str))
    if numbers.any():
        seconds = pd.to_numeric(values[numbers], errors="coerce").astype(np.float64)
        out[numbers] = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    if texts.any():
        out[texts] = pd.to_datetime(values[texts], utc=True, format="ISO8601", errors="coerce")
    bad = out.isna()
    reason = f"context time {name!r} is not ISO 8601 text or Unix epoch seconds"
    return out, [(int(i), reason) for i in values.index[bad].tolist()]


def add_context(frame: pd.DataFrame, detector: Any) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """``frame`` (decoded events indexed by position) with the model's context features.

    Parameters
    ----------
    frame : pandas.DataFrame
        The value columns (float64) and the ``by``/``time`` fields, indexed by position.
    detector : BaseDetector
        Fitted with a streamable context (:func:`check_streamable`).

    Returns
    -------
    frame : pandas.DataFrame
        In the order given, without the rows whose time is not a time, with the feature
        columns added.
    dead : list of (int, str)
        ``(position, reason)`` of the rows left out.
    """
    fitted = _fitted_context(detector)
    if fitted is None or not len(frame):
        return frame, []
    ctx = fitted.context
    dead: list[tuple[int, str]] = []
    given = frame
    if ctx.time is not None and getattr(fitted, "temporal", True):
        times, dead = _times(frame[ctx.time], ctx.time)
        frame = frame.assign(**{ctx.time: times.dt.tz_localize(None)})
        if dead:
            frame = frame.drop(index=[i for i, _ in dead])
    if not len(frame):
        return frame, dead
    order = frame.index
    out = fitted.transform_partition(frame).loc[order]
    if ctx.time in given.columns:  # a key column carries the event's own value, not the parsed
        out[ctx.time] = given[ctx.time].loc[order]
    return out, dead

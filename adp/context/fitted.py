"""Fitting a :class:`~adp.context.spec.Context` and computing its features on a dask frame.

**Why a shuffle by entity, not ``map_overlap``.** A trailing window or a seasonal baseline
belongs to one entity's rows in time order. ``map_overlap`` borrows a fixed number of rows
(or a fixed time span) from the neighbouring partition of a frame sorted by time; in a
fleet those rows are interleaved across entities, so the rows an entity needs may lie
several partitions back (an entity that reports rarely, a gap, a partition smaller than the
window), and the result would depend on the partitioning. Instead the frame is shuffled
by entity (``DataFrame.shuffle(on=by)``: a hash of the entity picks the partition, the same
for every partitioning of the input), each partition is sorted by entity, time and the
value columns, and every row's features are computed from its own entity's earlier rows
only (:mod:`adp.context.windows`). Every partition holds whole entities, so a row's
features are exactly the same with 1 or 100 input partitions, and the per-entity medians
of the baseline are exact, with no approximate distributed quantiles.

The price: an entity's whole history must fit in one worker's memory, and the output rows
come grouped by entity (one partition per input partition, keys and other columns carried,
so results still join back to the input). Fleets of many entities spread evenly; a single
series is one partition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.context.encodings import ColumnPlan, Encodings, fit_encodings, plan_columns
from adp.context.profile import (
    Profile,
    as_nanoseconds,
    choose_bins,
    combine,
    fit_partition,
    phases,
    step_counts,
)
from adp.context.sampling import sample_rows as draw_sample
from adp.context.spec import Context
from adp.context.stl import fit_stl_partition, require_stl
from adp.context.windows import group_starts, rolling
from adp.errors import DataError, bounded
from adp.graphs import flat_delayed

__all__ = ["FittedContext", "by_entity", "fit_context"]


def _codes(values: pd.Series | np.ndarray) -> np.ndarray:
    try:
        return np.asarray(pd.factorize(np.asarray(values), sort=True)[0])
    except TypeError:  # values that do not order (mixed types): order of appearance
        return np.asarray(pd.factorize(np.asarray(values, dtype=str), sort=True)[0])


def _entity_values(part: pd.DataFrame, by: str | None) -> np.ndarray:
    if by is None:
        return np.zeros(len(part), dtype=np.int64)
    values = part[by]
    if values.isna().any():
        raise DataError(
            f"context.by: column {by!r} has {int(values.isna().sum())} missing entity values; "
            "drop or fill those rows first"
        )
    return np.asarray(values.to_numpy())


def sort_rows(part: pd.DataFrame, context: Context, columns: Sequence[str]) -> pd.DataFrame:
    """``part`` sorted by entity, then time, then the value columns and the index (a
    total order, so a shuffle's arrival order never changes the result)."""
    keys = [np.asarray(_codes(part.index))]
    keys += [_codes(part[c]) for c in reversed(list(columns))]
    keys.append(_codes(part[context.time]))
    if context.by is not None:
        keys.append(_codes(part[context.by]))
    return part.iloc[np.lexsort(keys)]


def by_entity(ddf: dd.DataFrame, context: Context) -> dd.DataFrame:
    """``ddf`` with each entity's rows in one partition (as many partitions as the input;
    one without ``by``)."""
    if context.by is None:
        return ddf.repartition(npartitions=1)
    return ddf.shuffle(on=context.by, npartitions=ddf.npartitions)


def check_columns(ddf: dd.DataFrame, context: Context, columns: Sequence[str]) -> None:
    """Refuse, naming it, a ``by`` or ``time`` column that is missing or of the wrong type."""
    have = list(ddf.columns)
    for field, name in (("by", context.by), ("time", context.time)):
        if name is not None and name not in have:
            raise DataError(
                f"context.{field}: column {name!r} is not in the data; its columns are "
                f"{bounded(have)}"
            )
    if context.time is None:
        return
    dtype = ddf.dtypes[context.time]
    is_time = pd.api.types.is_datetime64_any_dtype(dtype)
    if context.season is not None and not is_time:
        raise DataError(
            f"context.time: column {context.time!r} is of type {dtype}, not a datetime, so "
            "it has no season; parse it (CSV: adp.read(..., parse_dates=[...]))"
        )
    if not is_time and not pd.api.types.is_numeric_dtype(dtype):
        raise DataError(
            f"context.time: column {context.time!r} is of type {dtype}; it must be a "
            "datetime or a number that orders the rows"
        )
    overlap = [c for c in columns if c in context.used_columns()]
    if overlap:
        raise DataError(f"context: {bounded(overlap)} cannot be both a feature and by/time")


@dataclass(frozen=True)
class FittedContext:
    """A fitted context: its baselines, and how to compute its features on any frame.

    Attributes
    ----------
    context : Context
        The parameters.
    columns : tuple of str
        The value columns the features are computed from.
    bins : int
        Phases per period (1 without a season).
    width : int
        Nanoseconds per phase (0 without a season).
    profile : Profile or None
        Per-entity baselines (plus a last row for entities unseen at fit time); ``None``
        when nothing is :attr:`temporal`.
    token : str
        A random id of this fit (names its key in dask graphs).
    encodings : Encodings or None
        The fitted categorical and text encoders (:mod:`adp.context.encodings`).
    """

    context: Context
    columns: tuple[str, ...]
    bins: int
    width: int
    profile: Profile | None
    token: str
    encodings: Encodings | None = None

    @property
    def feature_names(self) -> list[str]:
        """The features :meth:`transform` adds, in order: the numeric columns' (their
        context features, or themselves without ``time``), then the encodings'."""
        names = self.context.feature_names(list(self.columns))
        return names + (self.encodings.feature_names if self.encodings is not None else [])

    @property
    def temporal(self) -> bool:
        """Whether features depend on an entity's earlier rows (baselines and windows: the
        frame is shuffled by entity), rather than on each row alone."""
        return self.context.time is not None and bool(self.columns)

    @property
    def input_columns(self) -> list[str]:
        """The columns :meth:`transform` reads: ``by``, ``time``, numeric and encoded."""
        encoded = self.encodings.columns if self.encodings is not None else []
        used = self.context.used_columns() if self.temporal else []
        return list(dict.fromkeys([*used, *self.columns, *encoded]))

    def encode(self, part: pd.DataFrame) -> pd.DataFrame:
        """``part`` with the encoded features added, row by row (every column kept).

        Without :attr:`temporal` features this is the whole transform of a partition, of
        any rows in any order: a stream can call it on a micro-batch.
        """
        if self.encodings is None:
            return part
        new = self.encodings.transform(part)
        return pd.concat([part, pd.DataFrame(new, index=part.index)], axis=1)

    def __dask_tokenize__(self) -> str:
        return self.token

    # -- one partition --------------------------------------------------------------------

    def _phase(self, part: pd.DataFrame) -> np.ndarray:
        assert self.context.time is not None  # only temporal contexts have phases
        if self.bins <= 1:
            return np.zeros(len(part), dtype=np.int64)
        return phases(part[self.context.time], self.context.time, self.width, self.bins)

    def baseline(self, part: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """The baseline (median) and robust scale of each row of ``part``, ``(n, columns)``
        each: its entity's median at its phase and its entity's residual scale (per phase
        with ``normalise="robust_phase"``); the pooled ones for unseen entities."""
        if self.profile is None:
            raise DataError("context: this fitted context has no baselines (no time column)")
        entities = _entity_values(part, self.context.by)
        known = pd.Index(self.profile.entities)
        codes = np.asarray(known.get_indexer(entities)) if len(known) else np.full(len(part), -1)
        codes = np.where(codes < 0, len(known), codes)  # the pooled row
        phase = self._phase(part)
        if self.context.normalise == "robust_phase":
            scale = self.profile.scale[codes, phase]
        else:
            scale = self.profile.spread[codes]
        return self.profile.center[codes, phase], scale

    def transform_partition(self, part: pd.DataFrame) -> pd.DataFrame:
        """Features of one partition holding whole entities: sorted by entity and time,
        every input column kept, the :attr:`feature_names` columns added (float64)."""
        if not self.temporal:
            return self.encode(part)
        ctx = self.context
        part = sort_rows(part, ctx, self.columns)
        X = part[list(self.columns)].to_numpy(dtype=np.float64, na_value=np.nan)
        center, scale = self.baseline(part)
        base = X - center
        if ctx.normalise != "none":
            base = base / scale
        starts = group_starts(_codes(_entity_values(part, ctx.by)))
        new: dict[str, np.ndarray] = {}
        for j, column in enumerate(self.columns):
            # with ``raw``, the value column itself is a feature: it is already in ``part``
            new[f"{column}.{ctx.residual_name}"] = base[:, j]
            if ctx.window is not None:
                for stat in ctx.stats:
                    name = (
                        f"{column}.diff" if stat == "diff" else f"{column}.roll_{stat}_{ctx.window}"
                    )
                    new[name] = rolling(base[:, j], starts, ctx.window, stat)
        if self.encodings is not None:
            new.update(self.encodings.transform(part))
        return pd.concat([part, pd.DataFrame(new, index=part.index)], axis=1)

    # -- a dask frame ---------------------------------------------------------------------

    def transform(self, ddf: dd.DataFrame) -> dd.DataFrame:
        """``ddf`` with the context features added, lazily: shuffled by entity (see the
        module docstring), one task per output partition, every input column kept. With
        only row-wise features (encodings, no :attr:`temporal` ones) the partitions and
        their rows stay as they are.

        Raises
        ------
        adp.errors.DataError
            Naming a missing or mistyped ``by``/``time``/value column (at once), or missing
            entity values or times (when computed).
        """
        check_columns(ddf, self.context, self.columns)
        inputs = [*self.columns, *(self.encodings.columns if self.encodings else [])]
        missing = [c for c in inputs if c not in ddf.columns]
        if missing:
            raise DataError(
                f"context: value columns {bounded(missing)} are not in the data; the context "
                f"was fitted on {bounded(inputs)}"
            )
        meta = ddf._meta.copy()
        for name in self.feature_names:
            if name in self.columns:
                continue  # a raw value column (``raw: true``), already in the data
            if name in meta.columns:
                raise DataError(f"context: the data already has a column named {name!r}")
            meta[name] = np.empty(0, dtype=np.float64)
        ref = dask.delayed(self, name=f"adp-context-{self.token}")
        frame = by_entity(ddf, self.context) if self.temporal else ddf
        return frame.map_partitions(
            _transform, ref, meta=meta, enforce_metadata=False, align_dataframes=False
        )


def _transform(part: pd.DataFrame, fitted: FittedContext) -> pd.DataFrame:
    return fitted.transform_partition(part)


def _prepared(part: pd.DataFrame, context: Context, columns: list[str]) -> tuple[Any, ...]:
    part = sort_rows(part, context, columns)
    entities = _entity_values(part, context.by)
    codes = _codes(entities)
    uniques = pd.unique(entities)  # the rows are sorted by entity: in code order
    X = part[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    return part, codes, np.asarray(uniques), X


def _steps(part: pd.DataFrame, context: Context, columns: list[str]) -> pd.Series:
    assert context.time is not None  # only temporal contexts fit baselines
    part, codes, _, _ = _prepared(part, context, columns)
    return step_counts(part[context.time], codes, context.time)


def _choose(counts: list[pd.Series], period: int) -> int:
    return choose_bins(counts, period)


def _fit_part(part: pd.DataFrame, context: Context, columns: list[str], bins: int) -> Profile:
    assert context.time is not None  # only temporal contexts fit baselines
    part, codes, uniques, X = _prepared(part, context, columns)
    width = _width(context, bins)
    if context.season_method == "stl":
        time = str(context.time)  # a season needs a time column (checked by Context)
        slots = as_nanoseconds(part[time], time) // width
        return fit_stl_partition(X, codes, uniques, slots, bins, columns)
    phase = phases(part[context.time], context.time, width, bins) if bins > 1 else codes * 0
    return fit_partition(X, codes, uniques, phase, bins)


def _width(context: Context, bins: int) -> int:
    period = context.period
    return 0 if period is None else max(1, int(period.value // bins))


def fit_context(
    context: Context,
    ddf: dd.DataFrame,
    columns: Sequence[str],
    sample_rows: int | None = None,
) -> FittedContext:
    """Fit the baselines of ``context`` on all rows of ``ddf``, and its encoders on a
    sample, on the cluster (one compute).

    Parameters
    ----------
    context : Context
        The parameters.
    ddf : dask.dataframe.DataFrame
        Training rows with the ``by``, ``time`` and value columns.
    columns : sequence of str
        The value columns: numeric ones, and those the context encodes
        (:func:`adp.context.encodings.plan_columns` splits them).
    sample_rows : int, optional
        The encoders' fit sample (:mod:`adp.context.sampling`); default
        ``adp.fit.sample-rows``.

    Returns
    -------
    FittedContext

    Raises
    ------
    adp.errors.DataError
        Naming a missing or mistyped column, or when there are no rows (with
        ``season_method="stl"``: naming an entity too short or too sparse for STL).
    adp.errors.ConfigError
        With ``season_method="stl"`` when statsmodels is not installed.
    """
    plan = plan_columns(context, ddf.dtypes, list(columns))
    columns = list(plan.numeric)
    check_columns(ddf, context, [*columns, *plan.encoded])
    encodings = _encoders(context, ddf, plan, sample_rows)
    if context.time is None or not columns:
        return FittedContext(
            context=context,
            columns=tuple(columns),
            bins=1,
            width=0,
            profile=None,
            token=uuid.uuid4().hex,
            encodings=dask.compute(encodings)[0],
        )
    if context.season_method == "stl":
        require_stl()  # the install hint now, not from a worker
    frame = by_entity(ddf[[*context.used_columns(), *columns]], context)
    parts = frame.to_delayed()
    period = context.period
    bins: Any = 1
    if period is not None:
        if context.bins is not None:
            bins = context.bins
        else:
            counts = [dask.delayed(_steps)(p, context, columns) for p in parts]
            # one layer: every partition's profile task below depends on it
            bins = flat_delayed(dask.delayed(_choose)(counts, int(period.value)))
    profiles = [dask.delayed(_fit_part)(p, context, columns, bins) for p in parts]
    combined, bins, encoded = dask.compute(
        dask.delayed(combine)(profiles, bins, len(columns)), bins, encodings
    )
    return FittedContext(
        context=context,
        columns=tuple(columns),
        bins=int(bins),
        width=_width(context, int(bins)),
        profile=combined,
        token=uuid.uuid4().hex,
        encodings=encoded,
    )


def _encoders(
    context: Context, ddf: dd.DataFrame, plan: ColumnPlan, sample_rows: int | None
) -> Delayed | None:
    """The encoders of ``plan``, lazily, fitted on a sample (``None`` without any)."""
    if not plan.encoded:
        return None
    if sample_rows is None:
        from adp.config import settings

        sample_rows = settings().fit.sample_rows
    sample = draw_sample(ddf, plan.encoded, int(sample_rows))
    return dask.delayed(fit_encodings)(sample, plan, top=context.top, components=context.components)

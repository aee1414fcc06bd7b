"""The report's baseline figure: each top entity's readings drawn over its seasonal
baseline, flagged rows in red, so a person can see why a point was flagged.

The baseline is the fitted context's own (:meth:`~adp.context.fitted.FittedContext.baseline`):
the entity's median at each phase of the season and its robust scale. For each entity the
figure shows the value column whose flagged rows lie furthest from that baseline (in robust
scales), the baseline as a line and the band of three robust scales around it. Only the top
entities' rows reach the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.jobs.figures import plt, svg

if TYPE_CHECKING:
    from adp.jobs.spec import SourceSpec

#: The band drawn around the baseline, in robust scales.
BAND = 3.0


def applies(context: Any, group: str | None, time: str | None) -> bool:
    """Whether ``context`` (a fitted context or None) has a baseline to draw for the
    report's ``group`` and ``time`` columns: the same entity and time columns."""
    if context is None or group is None or time is None:
        return False
    spec = getattr(context, "context", None)
    return getattr(spec, "by", None) == group and getattr(spec, "time", None) == time


def entity_rows(
    source: SourceSpec, context: Any, groups: Sequence[Any], scored: dd.DataFrame
) -> pd.DataFrame:
    """The source rows of ``groups`` (entity, time and value columns) with the output's
    ``is_anomaly`` joined on entity and time, sorted; computed (a few entities' rows)."""
    from adp.jobs.opening import open_source

    spec = context.context
    columns = [spec.by, spec.time, *context.columns]
    opened = open_source(source, extra=[spec.by, spec.time])
    rows = opened.frame[columns]
    rows = rows[rows[spec.by].isin(list(groups))]
    flags = scored[scored[spec.by].isin(list(groups))][[spec.by, spec.time, "is_anomaly"]]
    values, flagged = dd.compute(rows, flags)
    merged = values.merge(flagged, on=[spec.by, spec.time], how="left")
    merged["is_anomaly"] = merged["is_anomaly"].fillna(False).astype(bool)
    return merged.sort_values([spec.by, spec.time], kind="stable").reset_index(drop=True)


def _worst_column(
    values: np.ndarray, center: np.ndarray, scale: np.ndarray, flags: np.ndarray
) -> int:
    """The value column whose flagged rows (all rows when none is) deviate most from the
    baseline on average, in robust scales: the column that explains most of the flags."""
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = np.abs(values - center) / np.where(scale > 0, scale, np.nan)
    chosen = deviation[flags] if flags.any() else deviation
    if not len(chosen) or np.all(np.isnan(chosen)):
        return 0
    with np.errstate(invalid="ignore"):
        means = np.nanmean(np.where(np.isnan(chosen), np.nan, chosen), axis=0)
    return int(np.nanargmax(np.where(np.isnan(means), -np.inf, means)))


def baseline_figure(rows: pd.DataFrame, context: Any, groups: Sequence[Any]) -> str:
    """An SVG: one panel per entity in ``groups``, its most deviating value column over
    time, the baseline and its band, flagged rows in red.

    Parameters
    ----------
    rows : pandas.DataFrame
        :func:`entity_rows`.
    context : FittedContext
        The detector's fitted context.
    groups : sequence
        The entities, in the order to draw them.
    """
    spec = context.context
    columns = list(context.columns)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.1 * len(groups)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, groups, strict=True):
        series = rows[rows[spec.by] == name]
        if not len(series):
            ax.set_ylabel(str(name), rotation=0, ha="right")
            continue
        center, scale = context.baseline(series)
        values = series[columns].to_numpy(dtype=np.float64, na_value=np.nan)
        flags = series["is_anomaly"].to_numpy(dtype=bool)
        j = _worst_column(values, center, scale, flags)
        times = series[spec.time]
        ax.fill_between(
            times,
            center[:, j] - BAND * scale[:, j],
            center[:, j] + BAND * scale[:, j],
            color="#ff7f0e",
            alpha=0.18,
            linewidth=0,
        )
        ax.plot(times, center[:, j], color="#ff7f0e", linewidth=0.9)
        ax.plot(times, values[:, j], color="#1f77b4", linewidth=0.6)
        ax.scatter(times[flags], values[flags, j], s=10, color="#d62728", zorder=3)
        ax.set_ylabel(f"{name}\n{columns[j]}", rotation=0, ha="right")
    axes[0].set_title(
        "reading (blue) over its seasonal baseline (orange, band: "
        f"{BAND:g} robust scales); red: flagged"
    )
    fig.autofmt_xdate()
    return svg(fig)


__all__ = ["BAND", "applies", "baseline_figure", "entity_rows"]

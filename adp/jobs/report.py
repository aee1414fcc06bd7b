"""The run report: one self-contained HTML page a person can look at.

It shows the summary, a histogram of all scores with the threshold, the scores over time of
the series with the most anomalies, and the top anomalies as a table. Every figure is
computed on the workers from the committed output; only small results reach the client.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.jobs import report_baseline
from adp.jobs.figures import plt
from adp.jobs.figures import svg as _svg
from adp.jobs.runner import JobResult
from adp.jobs.spec import OutputSpec, ReportSpec, SourceSpec
from adp.redact import redact_url

_BINS = 80


def _histogram(part: pd.DataFrame, lo: float, hi: float) -> np.ndarray:
    counts, _ = np.histogram(part["score"].to_numpy(), bins=_BINS, range=(lo, hi))
    return counts


def _histogram_figure(scored: dd.DataFrame, threshold: float) -> str:
    lo, hi = dask.compute(scored["score"].min(), scored["score"].max())
    lo, hi = float(lo), float(max(hi, lo + 1e-12))
    parts = [dask.delayed(_histogram)(p, lo, hi) for p in scored.to_delayed()]
    counts = np.sum(dask.compute(*parts), axis=0)
    edges = np.linspace(lo, hi, _BINS + 1)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    colors = ["#d62728" if left >= threshold else "#1f77b4" for left in edges[:-1]]
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colors)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_yscale("log")
    ax.set_xlabel("score (higher = more anomalous)")
    ax.set_ylabel("rows (log scale)")
    ax.legend()
    return _svg(fig)


def _series_figure(
    scored: dd.DataFrame, time: str, group: str, groups: list[Any], threshold: float
) -> str:
    rows = scored[scored[group].isin(groups)][[group, time, "score", "is_anomaly"]].compute()
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 1.9 * len(groups)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, groups, strict=True):
        series = rows[rows[group] == name].sort_values(time)
        ax.plot(series[time], series["score"], linewidth=0.7, color="#1f77b4")
        hits = series[series["is_anomaly"]]
        ax.scatter(hits[time], hits["score"], s=10, color="#d62728", zorder=3)
        ax.axhline(threshold, color="black", linestyle="--", linewidth=0.8)
        ax.set_ylabel(str(name), rotation=0, ha="right")
    axes[0].set_title("score over time; red: flagged, dashed: threshold")
    fig.autofmt_xdate()
    return _svg(fig)


def _summary_rows(result: JobResult) -> list[tuple[str, str]]:
    rows = [
        ("job", result.name),
        ("output", redact_url(result.output_uri) or ""),
        ("detector", f"{result.detector} on {len(result.features)} features"),
        ("rows scored", f"{result.rows:,} in {result.partitions} partitions"),
        ("workers", str(result.workers)),
        ("fit sample", f"{result.fit_rows:,} rows"),
        ("anomalies flagged", f"{result.anomalies:,} ({result.anomaly_share:.2%})"),
        ("threshold", f"{result.threshold:.6g}"),
        ("wall time", f"{result.wall_seconds:.1f} s"),
    ]
    if result.evaluation is not None:
        e = result.evaluation
        rows.append(("precision / recall", f"{e.precision:.3f} / {e.recall:.3f}"))
        for kind, recall in e.recall_by_kind().items():
            rows.append((f"recall: {kind}", f"{recall:.3f}"))
    return rows


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: left; }
th { background: #f4f4f4; }
svg { max-width: 100%; height: auto; }
"""


def read_output(result: JobResult, output: OutputSpec | None = None) -> dd.DataFrame:
    """The committed output of a job, lazily: its Parquet dataset (with the output's
    ``storage_options``, so an S3 output is read with the job's credentials and endpoint),
    or its database table (partitioned on its first integer or datetime column)."""
    from adp.io.read import read

    if output is not None and output.table is not None:
        # the column it is partitioned on is its index: put it back among the columns; a
        # database's BOOLEAN comes back as objects (or 0/1): make the flag a bool again
        table = _read_table(output.uri, output.table).reset_index()
        meta = table._meta.astype({"is_anomaly": bool})
        return table.map_partitions(_flags_as_bool, meta=meta)
    options = output.storage_options if output is not None else None
    # adp.read, not a plain Parquet reader: an ADP output is what its manifest names
    return read(result.output_uri, format="parquet", storage_options=options)


def _flags_as_bool(part: pd.DataFrame) -> pd.DataFrame:
    words = part["is_anomaly"].astype(str).str.strip().str.lower()
    return part.assign(is_anomaly=words.isin(["1", "true", "t", "1.0"]).to_numpy(dtype=bool))


def _read_table(url: str, table: str) -> dd.DataFrame:
    import sqlalchemy as sa

    from adp.db import engine_for
    from adp.errors import DataError
    from adp.io.read import read

    try:
        return read(url, table=table)
    except DataError:  # no single-column integer primary key: partition on another column
        pass
    columns = sa.inspect(engine_for(url)).get_columns(table)
    for column in columns:
        try:
            kind = column["type"].python_type
        except NotImplementedError:
            continue
        if column["name"] != "is_anomaly" and kind.__name__ in ("int", "datetime", "date"):
            return read(url, table=table, index_col=column["name"])
    raise DataError(
        f"the output table {table!r} has no integer or datetime column to read it in "
        "partitions by; the report cannot be drawn"
    )


def write_report(
    result: JobResult,
    path: str | Path,
    spec: ReportSpec | None = None,
    *,
    output: OutputSpec | None = None,
    source: SourceSpec | None = None,
) -> Path:
    """Render the HTML report of a finished job from its committed output.

    Parameters
    ----------
    result : JobResult
        The job's result (its ``output_uri`` is read).
    path : str or Path
        Where to write the HTML file.
    spec : ReportSpec, optional
        Time and group columns for the series plot, and table sizes.
    output : OutputSpec, optional
        The job's output section: a database table is read from the database, and a
        folder with the section's ``storage_options``.
    source : SourceSpec, optional
        The job's source section. With it, and a detector fitted with a context whose
        ``by`` and ``time`` are the report's ``group`` and ``time``, each top entity's
        readings are drawn over its seasonal baseline (read again for those entities only).

    Returns
    -------
    Path
        The written file.
    """
    spec = spec or ReportSpec()
    scored = read_output(result, output)
    sections = [
        "<h2>Summary</h2><table>"
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in _summary_rows(result)
        )
        + "</table>",
        "<h2>Scores</h2>" + _histogram_figure(scored, result.threshold),
    ]
    if result.profile is not None:
        sections.insert(
            1, f"<h2>Data quality</h2><pre>{html.escape(result.profile.render())}</pre>"
        )
    if spec.time and spec.group:
        counts = scored[scored["is_anomaly"]][spec.group].value_counts().nlargest(spec.series)
        groups = list(counts.compute().index)
        if groups:
            sections.append(
                f"<h2>The {len(groups)} {html.escape(spec.group)} series with most anomalies</h2>"
                + _series_figure(scored, spec.time, spec.group, groups, result.threshold)
            )
            if source is not None and report_baseline.applies(
                result.context, spec.group, spec.time
            ):
                rows = report_baseline.entity_rows(source, result.context, groups, scored)
                sections.append(
                    "<h2>Why they were flagged: readings against their seasonal baseline</h2>"
                    + report_baseline.baseline_figure(rows, result.context, groups)
                )
    top = scored.nlargest(spec.top, "score").compute()
    if top.index.name is not None:
        top = top.reset_index()
    sections.append(
        f"<h2>Top {len(top)} anomalies</h2>"
        + top.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0)
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>ADP report: {html.escape(result.name)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>ADP report: {html.escape(result.name)}</h1>{''.join(sections)}</body></html>"
    )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(page)
    tmp.replace(target)
    return target

"""The run report: one self-contained HTML page a person can look at.

It shows the summary, a histogram of all scores with the threshold, the scores over time of
the series with the most anomalies, and the top anomalies as a table. Every figure is
computed on the workers from the committed output; only small results reach the client.
"""

from __future__ import annotations

import html
import io
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import matplotlib
import numpy as np
import pandas as pd

from adp.jobs.runner import JobResult
from adp.jobs.spec import ReportSpec

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

_BINS = 80


def _histogram(part: pd.DataFrame, lo: float, hi: float) -> np.ndarray:
    counts, _ = np.histogram(part["score"].to_numpy(), bins=_BINS, range=(lo, hi))
    return counts


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


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
        ("output", result.output_uri),
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


def write_report(result: JobResult, path: str | Path, spec: ReportSpec | None = None) -> Path:
    """Render the HTML report of a finished job from its committed output.

    Parameters
    ----------
    result : JobResult
        The job's result (its ``output_uri`` is read).
    path : str or Path
        Where to write the HTML file.
    spec : ReportSpec, optional
        Time and group columns for the series plot, and table sizes.

    Returns
    -------
    Path
        The written file.
    """
    spec = spec or ReportSpec()
    scored = dd.read_parquet(result.output_uri)
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
    top = scored.nlargest(spec.top, "score").compute()
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

"""The short summary a job prints when it finishes."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from adp.jobs.runner import JobResult
from adp.redact import redact_url


def print_summary(result: JobResult, console: Console | None = None) -> None:
    """Print rows, partitions, workers, anomalies, precision/recall, output and wall time."""
    console = console or Console()
    table = Table(title=f"ADP job '{result.name}'", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("rows", f"{result.rows:,}")
    table.add_row("partitions", str(result.partitions))
    table.add_row("workers", str(result.workers))
    table.add_row("detector", f"{result.detector} (fit on {result.fit_rows:,} rows)")
    table.add_row("anomalies flagged", f"{result.anomalies:,} ({result.anomaly_share:.2%})")
    table.add_row("threshold", f"{result.threshold:.6g}")
    if result.evaluation is not None:
        e = result.evaluation
        table.add_row("precision", f"{e.precision:.3f}")
        table.add_row("recall", f"{e.recall:.3f}")
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in e.recall_by_kind().items())
        if kinds:
            table.add_row("recall by kind", kinds)
    if result.profile is not None:
        table.add_row("data quality", result.profile.render())
    table.add_row("output", redact_url(result.output_uri) or "")
    if result.report_path:
        table.add_row("report", result.report_path)
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in result.stage_seconds.items())
    table.add_row("wall time", f"{result.wall_seconds:.1f} s ({stages})")
    console.print(table)

"""``adp demo``: the embedded default, end to end on a LocalCluster with local files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from adp.jobs.spec import JobSpec


def demo_spec(data_dir: Path, out_dir: Path, *, workers: int = 2) -> JobSpec:
    """The demo's job spec: isolation forest over the four channels of every sensor."""
    return JobSpec.from_dict(
        {
            "name": "demo",
            "source": {
                "uri": str(data_dir),
                "format": "parquet",
                "features": ["temperature", "pressure", "vibration", "current"],
                "key": ["sensor_id", "ts"],
            },
            "detector": {
                "name": "isolation_forest",
                "params": {"n_estimators": 200, "random_state": 0},
            },
            "fit": {"sample_rows": 100_000, "random_state": 0},
            "threshold": {"contamination": 0.03},
            "explain": {"top_k": 2},
            "output": {"uri": str(out_dir / "scores"), "mode": "overwrite"},
            "cluster": {"n_workers": workers, "threads_per_worker": 1},
            "evaluate": {"label": "is_injected", "kind": "anomaly_kind"},
            "report": {"path": str(out_dir / "report.html"), "time": "ts", "group": "sensor_id"},
        },
        origin="demo spec",
    )


def run_demo(
    spec: JobSpec,
    *,
    sensors: int,
    days: int,
    scheduler: str | None = None,
    progress: bool = True,
) -> Any:
    """Generate the demo lake, then run ``spec`` on it and write the report."""
    from adp.jobs.console import run_and_report
    from adp.jobs.demo_lake import generate

    lake = generate(spec.source.uri, sensors=sensors, days=days)
    click.echo(
        f"demo lake: {lake.rows:,} rows in {lake.files} files at {lake.path} "
        f"({lake.injected:,} injected anomalies)"
    )
    return run_and_report(spec, scheduler=scheduler, report_path=None, progress=progress)

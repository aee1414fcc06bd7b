"""``adp bench passes``: a job's profile in its own read, against the profile riding on the
fit sample's read (:mod:`adp.detect.inspection`), in one run.

Every job profiles its source before fitting (``profile: true`` is the default, and a
quality gate needs it). Both variants below do the work of a job's first two stages on the
same lake and the same cluster, alternately:

- ``apart``: :func:`adp.io.profile.profile`, then ``fit`` (the code before);
- ``together``: ``fit(..., inspect=Inspection(summarise_partition, ...))``, which the job
  runner does now.

Each reports the median wall seconds and the source-reading tasks the scheduler ran (from
its task stream: one per partition and pass).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.measure import timed
from adp.bench.scoring import make_lake
from adp.errors import BenchmarkError

CSV_FILE_ROWS = 62_500


def _csv_lake(rows: int, features: int, folder: Path) -> Path:
    """The Parquet bench lake's first ``rows`` rows as CSV files (written once)."""
    target = folder / f"{rows}x{features}-csv"
    marker = target / "_complete"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, start in enumerate(range(0, rows, CSV_FILE_ROWS)):
        n = min(CSV_FILE_ROWS, rows - start)
        frame = pd.DataFrame(
            rng.normal(size=(n, features)), columns=[f"f{j}" for j in range(features)]
        )
        frame.to_csv(target / f"part.{i:05d}.csv", index=False)
    marker.touch()
    return target


def _reads(stream: list[dict[str, Any]]) -> int:
    def name(key: Any) -> str:
        return str(key[0] if isinstance(key, tuple) else key)

    return sum(1 for task in stream if name(task["key"]).startswith("read"))


def _one(
    client: Any, uri: str, detector: str, sample_rows: int, together: bool
) -> tuple[float, int]:
    from distributed import get_task_stream

    import adp
    from adp.detect.inspection import Inspection
    from adp.io.profile import profile, profile_from, summarise_partition

    ddf = adp.read(uri)
    det = adp.create_detector(detector)
    found: list[Any] = []
    with get_task_stream(client) as stream, timed() as took:
        if together:

            def conclude(summaries: list[Any]) -> None:
                found.append(profile_from(ddf._meta, summaries, source=uri))

            det.fit(
                ddf,
                sample_rows=sample_rows,
                random_state=0,
                inspect=Inspection(summarise_partition, conclude),
            )
        else:
            found.append(profile(ddf, source=uri))
            det.fit(ddf, sample_rows=sample_rows, random_state=0)
    if found[0].rows != det.n_rows_seen_:
        raise BenchmarkError(
            f"the profile counted {found[0].rows} rows, the fit {det.n_rows_seen_}"
        )
    return took.seconds, _reads(stream.data)


def bench_passes(
    rows: int = 2_000_000,
    csv_rows: int = 500_000,
    features: int = 20,
    detector: str = "hbos",
    sample_rows: int = 100_000,
    repeats: int = 3,
    workers: int = 2,
    data_dir: Path = Path("data/bench"),
) -> dict[str, Any]:
    """Time a job's profile and fit, apart and together, on a Parquet and a CSV lake.

    Parameters
    ----------
    rows, csv_rows, features : int
        Sizes of the Parquet lake (:func:`adp.bench.scoring.make_lake`) and the CSV lake.
    detector : str
        The detector fitted (its fit is small next to the reads).
    sample_rows : int
        Rows of the fit sample.
    repeats : int
        Runs of each variant, alternated; medians reported.
    workers : int
        Single-threaded workers of the LocalCluster.
    data_dir : pathlib.Path
        Where the lakes are written (or reused).

    Returns
    -------
    dict
        Per lake: ``apart`` and ``together`` (median seconds, reads) and ``speedup``.
    """
    import adp

    lakes = {
        "parquet": str(make_lake(rows, features, data_dir)),
        "csv": str(_csv_lake(csv_rows, features, data_dir) / "*.csv"),
    }
    result: dict[str, Any] = {"workers": workers, "detector": detector, "repeats": repeats}
    with adp.connect(n_workers=workers, threads_per_worker=1, install_plugins=False) as client:
        for kind, uri in lakes.items():
            _one(client, uri, detector, sample_rows, True)  # warm: imports, compilation
            times: dict[str, list[float]] = {"apart": [], "together": []}
            reads: dict[str, int] = {}
            for _ in range(repeats):
                for variant in ("apart", "together"):
                    seconds, count = _one(client, uri, detector, sample_rows, variant == "together")
                    times[variant].append(seconds)
                    reads[variant] = count
            medians = {v: round(statistics.median(t), 3) for v, t in times.items()}
            entry: dict[str, Any] = {
                v: {"seconds": medians[v], "reads": reads[v], "runs": t} for v, t in times.items()
            }
            entry["speedup"] = round(medians["apart"] / medians["together"], 3)
            entry["rows"] = rows if kind == "parquet" else csv_rows
            result[kind] = entry
    return result


@click.command("passes")
@click.option("--rows", default=2_000_000, show_default=True, help="Rows of the Parquet lake.")
@click.option("--csv-rows", default=500_000, show_default=True, help="Rows of the CSV lake.")
@click.option("--features", default=20, show_default=True)
@click.option("--detector", default="hbos", show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--workers", default=2, show_default=True)
@click.option(
    "--data-dir", default="data/bench", show_default=True, type=click.Path(path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def passes(
    rows: int,
    csv_rows: int,
    features: int,
    detector: str,
    repeats: int,
    workers: int,
    data_dir: Path,
    as_json: bool,
) -> None:
    """A job's profile and fit: the profile's own read against the sample's read."""
    result = bench_passes(rows, csv_rows, features, detector, 100_000, repeats, workers, data_dir)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(table(result))


def table(result: dict[str, Any]) -> str:
    """The report of :func:`bench_passes` as a Markdown table."""
    lines = [
        "| lake | rows | apart s (reads) | together s (reads) | speedup |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in ("parquet", "csv"):
        e = result[kind]
        lines.append(
            f"| {kind} | {e['rows']:,} | {e['apart']['seconds']:.2f} ({e['apart']['reads']}) "
            f"| {e['together']['seconds']:.2f} ({e['together']['reads']}) | {e['speedup']}x |"
        )
    return "\n".join(lines)

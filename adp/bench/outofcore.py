"""``adp bench outofcore``: a batch job over a lake larger than the cluster's memory.

For each row count, the lake of :func:`adp.bench.scoring.make_lake` (125k-row float64
Parquet files, 1% outliers) is written once and reused. A fresh LocalCluster of worker
processes (one thread each, ``memory_limit`` each) runs the real job path,
:func:`adp.jobs.runner.run_job`: read the lake, fit on a sample, threshold at a
contamination, write the flagged rows as Parquet to a scratch folder (removed afterwards).

Measured per run: wall seconds of the job, rows per second, each worker's peak resident
memory (``VmHWM``; the workers are new for every run), the client process's peak resident
memory (cumulative over the runs of one invocation, so its growth during the run is also
sampled every 0.2 s), and the bytes each worker spilled to disk. With bounded memory, the
time per million rows is flat across row counts and the peaks do not grow with the data.
The client process also hosts the LocalCluster's scheduler.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from adp.bench.measure import RssSampler, peak_rss, timed, warm_workers
from adp.bench.scoring import make_lake
from adp.errors import BenchmarkError

if TYPE_CHECKING:
    from adp.jobs.spec import JobSpec

SAMPLE_INTERVAL = 0.2
DATA_DIR = Path(tempfile.gettempdir()) / "benchdata"


@dataclass
class OutOfCoreRun:
    """One measured job over ``rows`` rows.

    Attributes
    ----------
    rows : int
        Rows scored (and written).
    seconds : float
        Wall seconds of the job, from reading the source to the committed output.
    rows_per_second : float
        ``rows / seconds``.
    seconds_per_million_rows : float
        ``seconds / (rows / 1e6)``; flat when time grows linearly with the rows.
    lake_bytes : int
        Size of the source lake on disk.
    peak_rss_bytes : dict
        Peak resident memory (VmHWM) of each worker (``worker-0``, ...) and of the client
        process (``client``, cumulative since the process started).
    client_rss_growth_bytes : int
        Largest client resident memory (VmRSS) sampled during the run, minus its value at
        the start of the run.
    spilled_bytes : dict
        Bytes each worker wrote to its spill directory during the run.
    spill_writes : dict
        Values each worker spilled to disk during the run.
    stage_seconds : dict
        The job's own stage timings (profile, fit, score, threshold, flag).
    anomalies : int
        Rows flagged.
    partitions : int
        Partitions (output files) of the job.
    """

    rows: int
    seconds: float
    rows_per_second: float
    seconds_per_million_rows: float
    lake_bytes: int
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    client_rss_growth_bytes: int = 0
    spilled_bytes: dict[str, int] = field(default_factory=dict)
    spill_writes: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    anomalies: int = 0
    partitions: int = 0


def _spill_totals(dask_worker: Any) -> tuple[int, int]:
    """Bytes and values the worker has written to disk since it started.

    ``Worker.data`` is a :class:`distributed.spill.SpillBuffer` when a memory limit is
    set; its ``cumulative_metrics`` count every ``disk-write`` (the same figures the
    worker's Prometheus endpoint exports). Without a SpillBuffer nothing is spilled.
    """
    metrics = getattr(dask_worker.data, "cumulative_metrics", None) or {}
    return int(metrics.get(("disk-write", "bytes"), 0)), int(
        metrics.get(("disk-write", "count"), 0)
    )


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A scratch folder under ``parent``, removed on exit whatever happens."""
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="adp-outofcore-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _job_spec(
    lake: Path, output: Path, detector: str, sample_rows: int, contamination: float
) -> JobSpec:
    from adp.jobs.spec import JobSpec

    return JobSpec.from_dict(
        {
            "name": "bench-outofcore",
            "source": {"uri": str(lake), "format": "parquet"},
            "detector": {"name": detector, "params": {}},
            "fit": {"sample_rows": sample_rows, "random_state": 0},
            "threshold": {"contamination": contamination},
            "output": {"uri": str(output), "mode": "overwrite"},
        }
    )


def run_outofcore(
    lake: Path,
    rows: int,
    *,
    detector: str = "isolation_forest",
    workers: int = 2,
    memory_limit: str = "2GiB",
    sample_rows: int = 100_000,
    contamination: float = 0.01,
    features: int = 20,
    scratch_dir: Path | None = None,
    warm: bool = True,
) -> OutOfCoreRun:
    """Run the batch job over ``lake`` on a fresh LocalCluster and measure it.

    Parameters
    ----------
    lake : pathlib.Path
        The Parquet lake (from :func:`adp.bench.scoring.make_lake`).
    rows : int
        Rows in the lake (checked against the job's count).
    detector : str
        Registered detector name.
    workers : int
        Worker processes, one thread each.
    memory_limit : str
        Memory limit of each worker, e.g. ``"2GiB"``.
    sample_rows : int
        Rows in the fit sample.
    contamination : float
        Share of rows flagged.
    features : int
        Feature columns of the lake (for the warm-up fit).
    scratch_dir : pathlib.Path, optional
        Where the job's output (and its audit log) is written and then removed; default
        the system's temporary folder.
    warm : bool
        Before timing, import the job's modules on every worker and fit the detector on a
        tiny array (imports and JIT compilation are then not timed).

    Returns
    -------
    OutOfCoreRun

    Raises
    ------
    adp.errors.BenchmarkError
        When the job did not commit its output or scored another number of rows than the
        lake holds: its figures would mean nothing.
    """
    import adp
    from adp.jobs.runner import run_job
    from adp.observe.audit import AuditLog

    parent = scratch_dir or Path(tempfile.gettempdir())
    with (
        _scratch(parent) as scratch,
        adp.connect(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=memory_limit,
            dashboard_address="127.0.0.1:0",
            install_plugins=False,
        ) as client,
    ):
        client.wait_for_workers(workers)
        if warm:
            warm_workers(client, detector, features)
        output = scratch / "scores"
        spec = _job_spec(lake, output, detector, sample_rows, contamination)
        audit = AuditLog(f"sqlite:///{scratch / 'audit.db'}", state_dir=scratch)
        before = client.run(_spill_totals)
        with RssSampler(SAMPLE_INTERVAL) as sampler, timed() as timer:
            result = run_job(spec, client=client, show_progress=False, audit_log=audit)
        seconds = timer.seconds
        after = client.run(_spill_totals)
        worker_peaks = client.run(peak_rss)
        if not output.exists():
            raise BenchmarkError(f"the job did not commit its output at {output}")
    if result.rows != rows:
        raise BenchmarkError(
            f"the job scored {result.rows} rows of the lake {lake}, expected {rows}"
        )
    names = {address: f"worker-{i}" for i, address in enumerate(sorted(worker_peaks))}
    peaks = {names[a]: int(v) for a, v in worker_peaks.items()}
    peaks["client"] = peak_rss()
    spilled = {names[a]: after[a][0] - before.get(a, (0, 0))[0] for a in after}
    writes = {names[a]: after[a][1] - before.get(a, (0, 0))[1] for a in after}
    return OutOfCoreRun(
        rows=result.rows,
        seconds=round(seconds, 3),
        rows_per_second=round(result.rows / seconds, 1),
        seconds_per_million_rows=round(seconds / (result.rows / 1e6), 3),
        lake_bytes=_folder_bytes(lake),
        peak_rss_bytes=peaks,
        client_rss_growth_bytes=sampler.growth_bytes,
        spilled_bytes=spilled,
        spill_writes=writes,
        stage_seconds={k: round(v, 3) for k, v in result.stage_seconds.items()},
        anomalies=result.anomalies,
        partitions=result.partitions,
    )


def _parse_bytes(text: str) -> int:
    from dask.utils import parse_bytes

    return int(parse_bytes(text))


def bench_outofcore(
    rows: tuple[int, ...],
    features: int = 20,
    detector: str = "isolation_forest",
    workers: int = 2,
    memory_limit: str = "2GiB",
    sample_rows: int = 100_000,
    contamination: float = 0.01,
    data_dir: Path = DATA_DIR,
    warm: bool = True,
) -> dict[str, Any]:
    """Measure the batch job for each row count, each on a fresh cluster.

    Parameters
    ----------
    rows : tuple of int
        Row counts, one lake and one run each.
    features : int
        Float64 feature columns.
    detector : str
        Registered detector name.
    workers : int
        Worker processes (one thread each).
    memory_limit : str
        Memory limit per worker.
    sample_rows : int
        Rows in the fit sample.
    contamination : float
        Share of rows flagged.
    data_dir : pathlib.Path
        Where the lakes are written (and reused) and the scratch output goes.
    warm : bool
        Warm every worker up before timing (see :func:`run_outofcore`).

    Returns
    -------
    dict
        ``runs`` (one :class:`OutOfCoreRun` each, as a dict) and the ratios of the largest
        to the smallest run: ``seconds_per_million_rows_ratio``, ``peak_worker_rss_ratio``.
    """
    cluster_bytes = workers * _parse_bytes(memory_limit)
    runs = []
    for count in rows:
        lake = make_lake(count, features, data_dir)
        run = run_outofcore(
            lake,
            count,
            detector=detector,
            workers=workers,
            memory_limit=memory_limit,
            sample_rows=sample_rows,
            contamination=contamination,
            features=features,
            scratch_dir=data_dir,
            warm=warm,
        )
        entry = asdict(run)
        entry["dataset_bytes_in_memory"] = count * features * 8
        entry["data_to_cluster_memory"] = round(count * features * 8 / cluster_bytes, 3)
        runs.append(entry)
    result: dict[str, Any] = {
        "features": features,
        "detector": detector,
        "workers": workers,
        "threads_per_worker": 1,
        "memory_limit": memory_limit,
        "cluster_memory_bytes": cluster_bytes,
        "sample_rows": sample_rows,
        "contamination": contamination,
        "warm": warm,
        "runs": runs,
        "lake_bytes": {str(r["rows"]): r["lake_bytes"] for r in runs},
    }
    if runs:
        small = min(runs, key=lambda r: r["rows"])
        large = max(runs, key=lambda r: r["rows"])
        result["seconds_per_million_rows"] = {
            str(r["rows"]): r["seconds_per_million_rows"] for r in runs
        }
        result["seconds_per_million_rows_ratio"] = round(
            large["seconds_per_million_rows"] / small["seconds_per_million_rows"], 3
        )
        result["peak_worker_rss_ratio"] = round(
            _max_worker_peak(large) / max(1, _max_worker_peak(small)), 3
        )
    return result


def _max_worker_peak(run: dict[str, Any]) -> int:
    return max((v for k, v in run["peak_rss_bytes"].items() if k != "client"), default=0)


def _row_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(float(part)) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated row counts, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"expected positive row counts, got {text!r}")
    return counts


@click.command("outofcore")
@click.option(
    "--rows",
    default="10000000,20000000,50000000",
    show_default=True,
    help="Comma-separated row counts, one run each.",
)
@click.option("--features", default=20, show_default=True)
@click.option("--detector", default="isolation_forest", show_default=True)
@click.option("--workers", default=2, show_default=True, help="Worker processes.")
@click.option("--memory-limit", default="2GiB", show_default=True, help="Per worker.")
@click.option("--sample-rows", default=100_000, show_default=True)
@click.option("--contamination", default=0.01, show_default=True)
@click.option(
    "--data-dir",
    default=str(DATA_DIR),
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the lakes are kept (reused) and the scratch output is written.",
)
@click.option(
    "--warm/--no-warm",
    default=True,
    show_default=True,
    help="Import and JIT-compile on the workers before timing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on one line.")
def outofcore(
    rows: str,
    features: int,
    detector: str,
    workers: int,
    memory_limit: str,
    sample_rows: int,
    contamination: float,
    data_dir: Path,
    warm: bool,
    as_json: bool,
) -> None:
    """Score lakes larger than the cluster's memory; time and memory per row count."""
    result = bench_outofcore(
        _row_counts(rows),
        features,
        detector,
        workers,
        memory_limit,
        sample_rows,
        contamination,
        data_dir,
        warm,
    )
    click.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))

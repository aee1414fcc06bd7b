"""``adp bench scoring``: ADP on 1 and 2 workers against single-process PyOD, in one run.

Beside the ratios it reports the **limit** of the run, what the hardware allows with no
overhead at all: the time to read the lake's files on one thread plus ADP's compiled
scorer over every row on one thread, divided by the workers, plus ADP's fit of the sample
(:func:`measure_limit`). ``vs_limit`` is ADP's whole job over that limit. Each worker count
runs two jobs on its cluster, the first and a second, each split into its phases from the
scheduler's task stream (:mod:`adp.bench.job_phases`).

All three read the same Parquet lake, fit the same detector on a sample of the same size and
score every row. Single-process PyOD reads the lake with pandas and scores it with one
``decision_function`` call (for ECOD and COPOD that call re-fits on training + scored
rows, which is what PyOD users get). ADP runs on a fresh LocalCluster of worker processes
with one thread each; every run fits a new model, so no task result is reused.

``--against isotree,h2o`` adds other isolation forests to the same run on the same lake
(:mod:`adp.bench.peers`, the ``bench`` extra): each fits the sample PyOD fits and scores
every row on 2 threads; ``speedup_vs_<peer>`` is the peer's seconds over ADP's on the most
workers. A peer that cannot run here is reported as ``{"skipped": reason}``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.job_phases import job_phases
from adp.bench.measure import peak_rss, timed, warm_workers
from adp.bench.peers import PEER_DETECTOR, PEERS, draw_sample, parse_peers, run_peer
from adp.errors import BenchmarkError

FILE_ROWS = 125_000


@dataclass
class Run:
    """One measured configuration.

    ``seconds`` is the whole job (read, sample, fit, score, threshold);
    ``score_seconds`` only the scoring of every row once the model is fitted (for ADP
    with the global threshold and the flags, for PyOD one ``decision_function`` call).
    ``phases`` (ADP only) splits the job's seconds by the scheduler's task stream
    (:mod:`adp.bench.job_phases`).
    """

    seconds: float
    rows_per_second: float
    score_seconds: float
    peak_rss_bytes: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)


def make_lake(
    rows: int, features: int, folder: Path, seed: int = 0, file_rows: int = FILE_ROWS
) -> Path:
    """Write (or reuse) a lake of ``rows`` x ``features`` float64 with 1% outliers.

    Files of ``file_rows`` rows (one dask partition each) under ``folder/{rows}x{features}``.
    """
    target = folder / f"{rows}x{features}"
    marker = target / "_complete"
    if marker.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, start in enumerate(range(0, rows, file_rows)):
        n = min(file_rows, rows - start)
        X = rng.normal(size=(n, features))
        X[rng.random(n) < 0.01] += rng.normal(0, 6, size=features)
        frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(features)])
        frame.to_parquet(target / f"part.{i:05d}.parquet", index=False)
    marker.touch()
    return target


def first_file(lake: Path) -> Path:
    """The first Parquet file of a bench lake."""
    return sorted(lake.glob("*.parquet"))[0]


def warm_inputs(lake: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1,000 rows of ``lake`` laid out as the timed calls get theirs: a drawn sample (C
    order) to fit on, and a file's matrix (Fortran order, as pandas hands it over) to score.

    numba compiles one specialisation per memory layout: a warm-up on a slice of the file's
    matrix (neither C nor Fortran contiguous) left the compilation for the C-ordered sample
    inside the timed fit (1.2 s of PyOD's HBOS fit, 0.09 s once compiled).
    """
    X = pd.read_parquet(first_file(lake)).to_numpy(dtype=np.float64)
    return draw_sample(X, 1000, seed), np.asfortranarray(X[:1000])


def _build(detector: str) -> Any:
    from adp.detect.registry import detector_info

    return detector_info(detector).build({}, 0.1)


def run_pyod(lake: Path, detector: str, sample_rows: int, seed: int = 0) -> Run:
    """Single-process PyOD: pandas reads the lake, fits a sample, scores every row.

    PyOD is warmed up first (imports, numba compilation) on 1,000 rows, untimed, as ADP's
    workers are: both sides are measured in their steady state.
    """
    fit_rows, score_rows = warm_inputs(lake, seed)
    _build(detector).fit(fit_rows).decision_function(score_rows)
    with timed() as whole:
        X = pd.read_parquet(lake).to_numpy(dtype=np.float64)
        sample = draw_sample(X, sample_rows, seed)
        model = _build(detector)
        model.fit(sample)
        with timed() as scoring:
            scores = model.decision_function(X)
        np.sum(scores >= np.quantile(scores, 0.9))
    seconds = whole.seconds
    return Run(seconds, len(X) / seconds, scoring.seconds, {"process": peak_rss()})


@dataclass
class Limit:
    """The parts of the limit, in seconds, measured in this process on one thread."""

    read_seconds: float
    score_seconds: float
    fit_seconds: float

    def for_workers(self, workers: int) -> float:
        """``(read + score) / workers + fit``: no scheduling, no copies, no threshold."""
        return (self.read_seconds + self.score_seconds) / workers + self.fit_seconds


def measure_limit(lake: Path, detector: str, sample_rows: int, seed: int = 0) -> Limit:
    """Fit the detector on a sample (:func:`adp.detect.fitting.fit_matrix`, as ADP's fit
    task does), then read each file of the lake into pandas (pyarrow decoding on one thread)
    and score it with ADP's frozen scorer (its compiled kernel where it has one), all on
    one thread.

    The lake is read and scored a file at a time, as a partitioned job does, never as one
    frame: at 20M x 20 one frame (3.2 GB) read in 4-6x the time of its files and scored at
    half their speed per row, a "limit" ADP's one worker beat.
    """
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits

    from adp.detect.fitting import fit_matrix
    from adp.detect.registry import detector_info

    info = detector_info(detector)
    files = sorted(lake.glob("*.parquet"))
    fit_rows, score_rows = warm_inputs(lake, seed)
    with threadpool_limits(1):
        # ADP's own fit of a matrix (its fast fitters where a detector has one), as its fit
        # task runs it
        fit_matrix(info, {}, 0.1, fit_rows, seed=seed).scorer.decision_function(score_rows)
        sample = draw_sample(_first_rows(files, sample_rows), sample_rows, seed)
        with timed() as fit:
            scorer = fit_matrix(info, {}, 0.1, sample, seed=seed).scorer
        read_seconds = score_seconds = 0.0
        for path in files:
            with timed() as read:  # one thread, as a worker's task decodes (pyarrow's default
                # pool would decode the columns on every core: 1.4x faster here)
                table = pq.read_table(path, use_threads=False)
                X = table.to_pandas(use_threads=False).to_numpy(dtype=np.float64)
            with timed() as score:
                scorer.decision_function(X)
            read_seconds += read.seconds
            score_seconds += score.seconds
    return Limit(read_seconds, score_seconds, fit.seconds)


def _first_rows(files: list[Path], rows: int) -> np.ndarray:
    """The rows of the first files of a lake, at least ``rows`` of them (or all): the
    files hold rows drawn alike, so a sample of them is a sample of the lake."""
    parts, held = [], 0
    for path in files:
        parts.append(pd.read_parquet(path).to_numpy(dtype=np.float64))
        held += len(parts[-1])
        if held >= rows:
            break
    return np.concatenate(parts)


def _one_job(client: Any, lake: Path, detector: str, sample_rows: int, seed: int) -> Run:
    """Fit on a sample of ``lake``, score every row, threshold globally; timed, with its
    phases from the task stream (which the scheduler records anyway: reading it costs the
    job nothing)."""
    from distributed import get_task_stream

    import adp

    with get_task_stream(client) as stream:
        began = time.time()
        with timed() as whole:
            ddf = adp.read(str(lake))
            det = adp.create_detector(detector).fit(ddf, sample_rows=sample_rows, random_state=seed)
            with timed() as scoring:
                flagged = int(det.detect(ddf)["is_anomaly"].sum().compute())
        ended = time.time()
    if flagged == 0:
        raise BenchmarkError(
            f"{detector} flagged no row of the lake {lake}, which holds 1% outliers: "
            "the run scored nothing worth timing"
        )
    seconds = whole.seconds
    phases = job_phases(stream.data, began, ended)
    return Run(seconds, det.n_rows_seen_ / seconds, scoring.seconds, phases=phases)


def run_adp(
    lake: Path, detector: str, sample_rows: int, workers: int, seed: int = 0
) -> tuple[Run, Run]:
    """ADP on a fresh LocalCluster: fit on a sample, score, threshold globally; the first
    such job on the cluster, then a second one on the same cluster.

    The second job's worker processes have touched the memory they need once already. On
    this project's VMs, memory a process touches for the first time is slow (a fresh GiB
    took 1.8 s here, against 0.07 s the second time): the first job pays for that, the
    limit (measured in this long-lived process) and PyOD do not.
    """
    import adp

    with adp.connect(n_workers=workers, threads_per_worker=1, install_plugins=False) as client:
        warm_workers(client, detector, len(pd.read_parquet(first_file(lake)).columns))
        # one untimed job on the lake's first file: the first job of a process pays for
        # more than the detector's compilation (1-4 s here), and PyOD is timed warm too
        first = adp.read(str(first_file(lake)))
        warm = adp.create_detector(detector).fit(first, sample_rows=1000, random_state=seed)
        int(warm.detect(first)["is_anomaly"].sum().compute())
        runs = [_one_job(client, lake, detector, sample_rows, seed) for _ in range(2)]
        rss = client.run(peak_rss)
    peaks = {f"worker-{i}": v for i, v in enumerate(rss.values())}
    peaks["client"] = peak_rss()
    for run in runs:
        run.peak_rss_bytes = peaks
    return runs[0], runs[1]


def bench_scoring(
    rows: int,
    features: int,
    detector: str,
    workers: tuple[int, ...] = (1, 2),
    sample_rows: int = 100_000,
    data_dir: Path = Path("data/bench"),
    against: tuple[str, ...] = (),
    pyod: bool = True,
) -> dict[str, Any]:
    """Measure single-process PyOD, ADP with each worker count and the peers, in one run.

    Parameters
    ----------
    rows, features : int
        Size of the lake (:func:`make_lake`).
    detector : str
        The detector every system fits.
    workers : tuple of int, default (1, 2)
        ADP's worker counts.
    sample_rows : int, default 100_000
        Rows of the fitting sample.
    data_dir : pathlib.Path, default data/bench
        Where the lake is written (or reused).
    against : tuple of str, default ()
        Peers of :mod:`adp.bench.peers` (only for the isolation forest).
    pyod : bool, default True
        Run single-process PyOD. It holds the whole lake in memory (and ECOD and COPOD
        several copies of it while they re-fit): at 20M x 20 that is tens of GB.

    Returns
    -------
    dict
        The report: one entry per system, the limit and the ratios.
    """
    if against and detector != PEER_DETECTOR:
        raise ValueError(f"peers exist only for the {PEER_DETECTOR} detector, not {detector}")
    lake = make_lake(rows, features, data_dir)
    result: dict[str, Any] = {"rows": rows, "features": features, "detector": detector}
    pyod_run = run_pyod(lake, detector, sample_rows) if pyod else None
    if pyod_run is not None:
        result["pyod"] = asdict(pyod_run)
    limit = measure_limit(lake, detector, sample_rows)
    result["limit"] = {**asdict(limit), **{f"{w}_workers": limit.for_workers(w) for w in workers}}
    both = {w: run_adp(lake, detector, sample_rows, w) for w in workers}
    adp_runs = {w: runs[0] for w, runs in both.items()}
    for w, (run, again) in both.items():
        result[f"adp_{w}_workers"] = {
            **asdict(run),
            "vs_limit": round(run.seconds / limit.for_workers(w), 3),
            "second_job": {
                **{k: v for k, v in asdict(again).items() if k != "peak_rss_bytes"},
                "vs_limit": round(again.seconds / limit.for_workers(w), 3),
            },
        }
    best = adp_runs[max(workers)]
    if pyod_run is not None:
        result["speedup_vs_pyod"] = round(pyod_run.seconds / best.seconds, 3)
        result["score_speedup_vs_pyod"] = round(pyod_run.score_seconds / best.score_seconds, 3)
    if 1 in adp_runs and 2 in adp_runs:
        result["scaling_2_vs_1"] = round(adp_runs[1].seconds / adp_runs[2].seconds, 3)
    for peer in against:
        result[peer] = run_peer(peer, lake, sample_rows)
        if "seconds" in result[peer]:
            result[f"speedup_vs_{peer}"] = round(result[peer]["seconds"] / best.seconds, 3)
    return result


def _against(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    try:
        return parse_peers(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


def _peer_label(name: str, run: dict[str, Any]) -> str:
    if name == "h2o":
        parts = run.get("parts", {})
        detail = ", ".join(f"{k.replace('_', '/')} {v:.1f}" for k, v in parts.items())
        label = f"H2O {run.get('version', '')} `H2OIsolationForestEstimator`"
        return f"{label}, {run.get('threads')} threads ({detail})"
    return f"{name} {run.get('version', '')}, {run.get('threads')} threads"


def table(result: dict[str, Any]) -> str:
    """The report's systems as a Markdown table (peers that did not run say why), for
    people; ``--json`` gives every figure.

    Parameters
    ----------
    result : dict
        A report of :func:`bench_scoring`.

    Returns
    -------
    str
    """
    lines = ["| system | seconds | score seconds | rows/s |", "|---|---:|---:|---:|"]

    def row(label: str, run: dict[str, Any]) -> None:
        lines.append(
            f"| {label} | {run['seconds']:.1f} | {run['score_seconds']:.1f} "
            f"| {run['rows_per_second']:,.0f} |"
        )

    for key in sorted(k for k in result if k.startswith("adp_") and k.endswith("_workers")):
        count = int(key.split("_")[1])
        row(f"ADP, {count} worker{'s' if count > 1 else ''}", result[key])
        if "second_job" in result[key]:
            row(
                f"ADP, {count} worker{'s' if count > 1 else ''}, second job",
                result[key]["second_job"],
            )
    if "pyod" in result:
        row("PyOD, one process", result["pyod"])
    for name in PEERS:
        run = result.get(name)
        if run is None:
            continue
        if "seconds" in run:
            row(_peer_label(name, run), run)
        else:
            lines.append(f"| {name}: {run.get('skipped') or run.get('failed')} | - | - | - |")
    speedups = [
        f"{k.removeprefix('speedup_vs_')} {v}x"
        for k, v in result.items()
        if k.startswith("speedup_vs_")
    ]
    lines += ["", f"ADP on the most workers, speedup vs: {', '.join(speedups)}"]
    for key in sorted(k for k in result if k.startswith("adp_") and k.endswith("_workers")):
        for label, run in (("", result[key]), (", second job", result[key].get("second_job"))):
            phases = (run or {}).get("phases")
            if phases:
                split = ", ".join(f"{n.replace('_', ' ')} {s:.2f} s" for n, s in phases.items())
                lines.append(f"{key.replace('_', ' ')}{label}, phases: {split}")
    return "\n".join(lines)


@click.command("scoring")
@click.option("--rows", default=2_000_000, show_default=True)
@click.option("--features", default=20, show_default=True)
@click.option("--detector", default="isolation_forest", show_default=True)
@click.option("--workers", default="1,2", show_default=True, help="Comma-separated counts.")
@click.option("--sample-rows", default=100_000, show_default=True)
@click.option(
    "--data-dir", default="data/bench", show_default=True, type=click.Path(path_type=Path)
)
@click.option(
    "--against",
    default=None,
    callback=_against,
    metavar="PEERS",
    help=f"Comma-separated peers run on the same lake ({', '.join(PEERS)}); "
    f"only for --detector {PEER_DETECTOR}; needs the bench extra.",
)
@click.option(
    "--pyod/--no-pyod",
    default=True,
    show_default=True,
    help="Run single-process PyOD (it holds the whole lake in memory, ECOD several times).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def scoring(
    rows: int,
    features: int,
    detector: str,
    workers: str,
    sample_rows: int,
    data_dir: Path,
    against: tuple[str, ...],
    pyod: bool,
    as_json: bool,
) -> None:
    """Throughput of ADP (1 and 2 workers) against single-process PyOD (and peers)."""
    if against and detector != PEER_DETECTOR:
        raise click.BadParameter(
            f"peers exist only for --detector {PEER_DETECTOR}, not {detector}",
            param_hint="'--against'",
        )
    counts = tuple(int(w) for w in workers.split(","))
    result = bench_scoring(
        rows, features, detector, counts, sample_rows, data_dir, against, pyod=pyod
    )
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(json.dumps(result, indent=2))
    click.echo()
    click.echo(table(result))

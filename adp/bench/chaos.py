"""``adp bench chaos``: what survives when things break, scenario by scenario.

``worker_kills``
    One of three workers SIGKILLed at 10/30/50/70/90% of a 100-partition job (progress:
    the partitions the job has staged, of 2 per partition): every output identical to an
    undisturbed run's by per-file SHA-256, nothing outside the manifest, no staging left
    (:mod:`adp.bench.chaos_workers`).
``poison_partition``
    A partition that kills every worker reading it, in an overwrite of a committed output:
    one error naming the partition, the output byte-identical, no staging left.
``oversized_partition``
    A partition 1.5 times a worker's memory limit: an error naming it within 120 s.
``client_signals``
    SIGTERM, SIGHUP and SIGKILL to ``adp run`` at random points (``--runs`` each): no
    debris after the next start, the audit trail closed truthfully, the failure counted
    (:mod:`adp.bench.chaos_client`).
``s3_stopped`` and ``full_disk``
    The S3 server killed mid-read; an output on a full 2 MiB tmpfs: one error line,
    nothing half-written (:mod:`adp.bench.chaos_io`).

Every scenario is timed through :mod:`adp.bench.measure` and reports ``passed``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from adp.bench.measure import timed

__all__ = ["SCENARIOS", "bench_chaos", "chaos"]

#: The scenarios, in the order they run.
SCENARIOS = (
    "worker_kills",
    "poison_partition",
    "oversized_partition",
    "client_signals",
    "s3_stopped",
    "full_disk",
)


def _on_workers(
    root: Path, chosen: Sequence[str], partitions: int, rows: int
) -> list[dict[str, Any]]:
    """worker_kills and poison_partition on one LocalCluster of three workers."""
    import dask
    from distributed import Client, LocalCluster

    from adp.bench.chaos_workers import poison_partition, worker_kills

    results = []
    with (
        dask.config.set({"adp.state-dir": str(root / "state")}),
        LocalCluster(n_workers=3, threads_per_worker=1, dashboard_address="127.0.0.1:0") as lc,
        Client(lc) as client,
    ):
        with timed() as t:
            kills = worker_kills(root, client, partitions=partitions, rows=rows)
        results.append({**kills, "seconds": t.seconds})
        if "poison_partition" in chosen:
            client.wait_for_workers(3, timeout=120)
            with timed() as t:
                poison = poison_partition(root, client, index=min(7, partitions - 1))
            results.append({**poison, "scenario_seconds": t.seconds})
    return results


def bench_chaos(
    root: Path,
    *,
    scenarios: Sequence[str] = SCENARIOS,
    runs: int = 10,
    partitions: int = 100,
    rows: int = 2000,
    signal_partitions: int = 32,
    signal_rows: int = 5000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Run the chaos ``scenarios`` in folders under ``root``.

    Parameters
    ----------
    root : pathlib.Path
        An empty folder for lakes, outputs and state (each scenario its own).
    scenarios : sequence of str
        Names from :data:`SCENARIOS`; ``poison_partition`` reuses ``worker_kills``' output
        and runs only with it.
    runs : int, default 10
        Runs per signal in ``client_signals``.
    partitions, rows : int
        Partitions and rows per partition of the ``worker_kills`` job.
    signal_partitions, signal_rows : int
        The same for the jobs of ``client_signals``, ``s3_stopped`` and ``full_disk``.
    seed : int
        Seed of the lakes and of the signals' random points.

    Returns
    -------
    list of dict
        One object per scenario: its counts and times, and ``passed``.
    """
    from adp.bench.chaos_client import client_signals
    from adp.bench.chaos_io import full_disk, s3_stopped
    from adp.bench.chaos_workers import oversized_partition

    unknown = sorted(set(scenarios) - set(SCENARIOS))
    if unknown:
        raise click.BadParameter(f"unknown scenario(s) {unknown}: choose from {list(SCENARIOS)}")
    results: list[dict[str, Any]] = []
    if "worker_kills" in scenarios:
        results += _on_workers(root / "workers", scenarios, partitions, rows)
    later: dict[str, Callable[[Path], dict[str, Any]]] = {
        "oversized_partition": oversized_partition,
        "client_signals": lambda where: client_signals(
            where, runs=runs, partitions=signal_partitions, rows=signal_rows, seed=seed
        ),
        "s3_stopped": lambda where: s3_stopped(
            where, partitions=signal_partitions, rows=signal_rows
        ),
        "full_disk": lambda where: full_disk(where, partitions=signal_partitions, rows=signal_rows),
    }
    for name, scenario in later.items():
        if name in scenarios:
            where = root / name
            where.mkdir(parents=True)
            with timed() as t:
                result = scenario(where)
            results.append({**result, "scenario_seconds": t.seconds})
    return results


def _line(result: dict[str, Any]) -> str:
    verdict = "PASS" if result.get("passed") else "FAIL"
    name = result["scenario"]
    seconds = result.get("scenario_seconds", result.get("seconds", float("nan")))
    if name == "worker_kills":
        detail = (
            f"{result['identical']}/{result['count']} outputs identical to the undisturbed "
            f"run ({result['partitions']} partitions, baseline {result['baseline_seconds']:.1f} s)"
        )
    elif name == "client_signals":
        detail = "; ".join(
            f"{sig} {s['passed']}/{s['runs']} {s['outcomes']}"
            for sig, s in result["by_signal"].items()
        )
    else:
        detail = str(result.get("error"))
    return f"{verdict} {name:<20} {seconds:7.1f} s  {detail}"


@click.command("chaos")
@click.option(
    "--scenario",
    "scenarios",
    multiple=True,
    type=click.Choice(SCENARIOS),
    help="Run only these scenarios (repeatable); default all.",
)
@click.option(
    "--runs",
    default=10,
    show_default=True,
    type=click.IntRange(min=1),
    help="Runs per signal (SIGTERM, SIGHUP, SIGKILL) to the client.",
)
@click.option(
    "--partitions",
    default=100,
    show_default=True,
    type=click.IntRange(min=10),
    help="Partitions of the worker-kill job.",
)
@click.option(
    "--rows",
    default=2000,
    show_default=True,
    type=click.IntRange(min=100),
    help="Rows per partition of the worker-kill job.",
)
@click.option("--seed", default=0, show_default=True, help="Seed of data and signal timing.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Work in this (new) folder and keep it; default a temporary folder.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per scenario.")
def chaos(
    scenarios: tuple[str, ...],
    runs: int,
    partitions: int,
    rows: int,
    seed: int,
    keep: Path | None,
    as_json: bool,
) -> None:
    """Kill workers, partitions, the client, S3 and the disk; check nothing is lost or left.

    Exits 1 when a scenario fails.
    """
    chosen = scenarios or SCENARIOS
    if keep is not None:
        keep.mkdir(parents=True)
        results = bench_chaos(
            keep, scenarios=chosen, runs=runs, partitions=partitions, rows=rows, seed=seed
        )
    else:
        with tempfile.TemporaryDirectory(prefix="adp-chaos-") as folder:
            results = bench_chaos(
                Path(folder),
                scenarios=chosen,
                runs=runs,
                partitions=partitions,
                rows=rows,
                seed=seed,
            )
    if as_json:
        for result in results:
            click.echo(json.dumps(result, default=str))
    else:
        for result in results:
            click.echo(_line(result))
    if not all(r.get("passed") for r in results):
        click.echo("error: a chaos scenario failed (see above)", err=True)
        sys.exit(1)

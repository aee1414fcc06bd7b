"""The cost of ADP's plugins: one job, with and without them, on one LocalCluster.

:func:`bench_plugin_overhead` runs a dask-dataframe ``map_partitions`` job (each partition
computes z-scores, flags anomalies and calls :func:`adp.observe.events.report`) (one
task per partition: make the partition, score it, count its anomalies) on a LocalCluster of
two single-threaded worker processes, in three variants, alternating:

``bare``
    The partition function does not report; no plugin.
``report``
    It reports; no plugin (events go only to the scheduler's bounded event log).
``plugins``
    It reports; ADP's scheduler plugin is installed, with metrics and a SQLite audit log
    in a temporary state directory.

Each run has fresh task keys; the order of the variants rotates from round to round. Between
runs the plugin is installed and unregistered again.
``adp bench plugins`` is the :func:`plugins` command.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.measure import median_and_best, per_call, timed

__all__ = ["bench_plugin_overhead", "plugins"]


def _partition(i: int, rows: int) -> pd.DataFrame:
    """Make partition ``i`` on the worker (no data travels in the graph)."""
    return pd.DataFrame({"x": np.random.default_rng(i).standard_normal(rows)})


def _score(pdf: pd.DataFrame, salt: int, emit: bool) -> pd.DataFrame:
    """Score one partition (z-score of ``x``) and, if ``emit``, report its figures."""
    with timed() as timer:
        x = pdf["x"].to_numpy()
        score = np.abs((x - x.mean()) / (x.std() + 1e-12))
        out = pd.DataFrame({"score": score, "is_anomaly": score > 3.0}, index=pdf.index)
        flagged = int(out["is_anomaly"].sum())
    if emit:
        from adp.observe.events import report

        report(
            rows_scored=len(pdf),
            anomalies_flagged=flagged,
            partition_score_seconds=timer.seconds,
        )
    return out


def _time_report_calls(n: int) -> float:
    """Seconds per :func:`report` call, measured inside a task on a worker."""
    from adp.observe.events import report

    return per_call(lambda: report(rows_scored=1, partition_score_seconds=0.001), n)


def _time_hook_calls(n: int) -> float:
    """Seconds per scheduler-side ``log_event`` hook call for one ``adp-metrics`` event."""
    from adp.observe.events import TOPIC
    from adp.observe.plugins import AdpSchedulerPlugin

    plugin = AdpSchedulerPlugin(audit=False)
    msg = {"rows_scored": 200.0, "anomalies_flagged": 3.0, "partition_score_seconds": 0.01}
    return per_call(lambda: plugin.log_event(TOPIC, msg), n)


def _run_job(client: Any, frame: Any, salt: int, emit: bool) -> tuple[float, int]:
    meta = pd.DataFrame({"score": pd.Series(dtype="float64"), "is_anomaly": pd.Series(dtype=bool)})
    scored = frame.map_partitions(_score, salt, emit, meta=meta)
    with timed() as timer:
        flagged = int(client.compute(scored["is_anomaly"].sum()).result())
    return timer.seconds, flagged


def bench_plugin_overhead(
    partitions: int = 1000,
    *,
    repeats: int = 3,
    rows_per_partition: int = 200,
    warmup: bool = True,
) -> dict[str, Any]:
    """Time the same ``partitions``-partition job with and without ADP's plugins.

    Parameters
    ----------
    partitions : int, default 1000
        Partitions (tasks) of the scored dataframe.
    repeats : int, default 3
        Timed runs per variant (after one warm-up run each); medians are reported.
    rows_per_partition : int, default 200
        Rows in each partition.
    warmup : bool, default True
        Run each variant once, untimed, before the timed runs.

    Returns
    -------
    dict
        ``bare_seconds``, ``report_seconds``, ``plugins_seconds`` (medians),
        ``ratio`` (plugins / report: the plugins' cost), ``ratio_vs_bare``
        (plugins / bare: plugins plus reporting), ``min_seconds`` (the fastest run of each
        variant) and ``ratio_vs_bare_min`` (robust on a busy machine), ``per_task_overhead_ms``,
        ``report_call_us`` (one ``report()`` call inside a task on a worker, in
        microseconds), ``hook_call_us`` (the scheduler-side hook per event),
        ``rows_scored_counted`` and ``rows_expected`` (the plugin's exact count from the
        last plugins run), ``partitions``, ``repeats`` and ``runs`` (every timing).
    """
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    from adp.observe.plugins import PLUGIN_NAME, install

    rows = partitions * rows_per_partition
    frame = dd.from_map(_partition, range(partitions), rows=rows_per_partition)
    runs: dict[str, list[float]] = {"bare": [], "report": [], "plugins": []}
    counted = 0.0
    report_s = float("nan")
    salt = 0
    with (
        tempfile.TemporaryDirectory(prefix="adp-bench-") as state,
        dask.config.set({"adp.state-dir": state, "adp.audit.url": None}),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        variants = ("bare", "report", "plugins")
        for attempt in range(0 if warmup else 1, repeats + 1):
            # rotate the order each round so no variant always runs first or last
            for variant in variants[attempt % 3 :] + variants[: attempt % 3]:
                salt += 1
                if variant == "plugins":
                    install(client)
                seconds, _ = _run_job(client, frame, salt, emit=variant != "bare")
                if variant == "plugins":
                    plugin = cluster.scheduler.plugins[PLUGIN_NAME]
                    counted = plugin.metrics.value("rows_scored")
                    if attempt == repeats:
                        report_s = client.submit(_time_report_calls, 2000, pure=False).result()
                    client.unregister_scheduler_plugin(PLUGIN_NAME)
                if attempt:  # the first round warms up
                    runs[variant].append(seconds)
    spread = {name: median_and_best(times) for name, times in runs.items()}
    med = {name: m for name, (m, _) in spread.items()}
    best = {name: b for name, (_, b) in spread.items()}
    return {
        "partitions": partitions,
        "repeats": repeats,
        "bare_seconds": med["bare"],
        "report_seconds": med["report"],
        "plugins_seconds": med["plugins"],
        "ratio": med["plugins"] / med["report"],
        "ratio_vs_bare": med["plugins"] / med["bare"],
        "min_seconds": best,
        "ratio_vs_bare_min": best["plugins"] / best["bare"],
        "per_task_overhead_ms": (med["plugins"] - med["bare"]) / partitions * 1000,
        "report_call_us": report_s * 1e6,
        "hook_call_us": _time_hook_calls(20_000) * 1e6,
        "rows_scored_counted": counted,
        "rows_expected": rows,
        "runs": runs,
    }


@click.command("plugins")
@click.option("--partitions", default=1000, show_default=True, type=click.IntRange(min=1))
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--warmup/--no-warmup", default=True, show_default=True, help="Untimed first round.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def plugins(partitions: int, repeats: int, warmup: bool, as_json: bool) -> None:
    """Overhead of ADP's scheduler plugin and report() on a job of PARTITIONS partitions."""
    result = bench_plugin_overhead(partitions, repeats=repeats, warmup=warmup)
    if as_json:
        click.echo(json.dumps(result, indent=1))
        return
    click.echo(f"{partitions} partitions, 2 worker processes, median of {repeats} runs")
    for variant in ("bare", "report", "plugins"):
        click.echo(f"  {variant:<8} {result[f'{variant}_seconds']:8.3f} s")
    click.echo(
        f"  fastest runs: plugins / bare = {result['ratio_vs_bare_min']:.3f}; medians: "
        f"plugins / report = {result['ratio']:.3f}; plugins / bare = "
        f"{result['ratio_vs_bare']:.3f} ({result['per_task_overhead_ms']:+.3f} ms per partition)"
    )
    click.echo(
        f"  report() {result['report_call_us']:.1f} us per call on a worker; scheduler hook "
        f"{result['hook_call_us']:.1f} us per event"
    )
    click.echo(f"  rows counted {result['rows_scored_counted']:.0f} of {result['rows_expected']}")


if __name__ == "__main__":
    plugins()

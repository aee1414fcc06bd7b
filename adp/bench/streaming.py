"""``adp bench stream``: streaming detection on the machine's Redis (issue 14, point 8).

One run, on ``--workers`` single-threaded worker processes, with an isolation forest fitted
on 20,000 random rows of ``--features`` features. The cluster is laid out as it is
deployed (``--cluster processes``, the default): a ``dask scheduler`` process and a
``dask worker`` process with its workers, beside the consumer's process; ``--cluster
local`` runs a LocalCluster instead, whose scheduler lives in the consumer's process and
competes with it for the interpreter's lock.

1. **sustained**: ``--events`` events are written to a fresh Redis stream first, then one
   consumer (:class:`adp.stream.runner.StreamRunner`, batches of ``--batch``) scores them
   all and publishes every result to an output stream; events/s = events / wall time.
   Beside it, the CPU time each part of the path spent per event (the consumer process,
   the workers, the scheduler, the Redis server), which a machine shared with other work
   changes far less than the wall time.
2. **latency**: a producer process writes events at ``--rate`` per second for
   ``--seconds`` (each carries its write time) and reads the output stream as results
   arrive; a result's latency is the time from its event's write to its result being
   readable. (Producer and reader are a process of their own, as they are in life: in the
   consumer's process they would compete with it for the interpreter's lock.) The
   consumer's resident memory is sampled throughout: at the start, at each quarter of the
   run, its peak (a flat RSS over a long run shows bounded memory).
3. **River**: ``river.anomaly.HalfSpaceTrees`` (River's defaults: 10 trees of height 8,
   trained on the first 1,000 events) scores events drawn the same way with
   ``score_one``, one at a time in one thread.

ADP's figures include the whole path (Redis, JSON decoding, scoring on the cluster,
thresholding, publishing, acknowledging); River's only ``score_one`` on decoded events.
The issue's targets: >= 100,000 events/s sustained, p99 latency under 500 ms at 10,000
events/s, a flat consumer RSS over a 10-minute run (``--seconds 600``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
import numpy as np
import orjson

from adp.bench.measure import RssSampler, cluster, current_rss, timed
from adp.bench.process_cluster import process_cluster
from adp.bench.stream_sql import BenchTable, postgres_cpu
from adp.db import safe_url
from adp.errors import BenchmarkError
from adp.stream.collector import fewer_collections

__all__ = ["bench_stream", "produce_and_read", "stream"]


def _events(rows: int, features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, features))


def _payloads(X: np.ndarray, stamp: bool = False) -> list[bytes]:
    names = [f"f{i}" for i in range(X.shape[1])]
    out = []
    for row in X.tolist():
        event: dict[str, Any] = dict(zip(names, row, strict=True))
        if stamp:
            event["t"] = time.time()
        out.append(orjson.dumps(event))
    return out


def _write(redis_client: Any, stream: str, payloads: list[bytes]) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, {"data": payload})
    pipe.execute()


def _runner(
    url: str,
    stream: str,
    client: Any,
    model: Any,
    batch: int,
    key: list[str],
    max_wait_ms: int = 100,
    max_in_flight: int = 4,
    extra_sinks: tuple[Any, ...] = (),
) -> tuple[Any, Any]:
    from adp.stream.brokers.redis_streams import RedisStreamsBroker
    from adp.stream.runner import StreamRunner
    from adp.stream.sinks import StreamSink
    from adp.stream.thresholds import FixedThreshold

    broker = RedisStreamsBroker(url, stream, "bench", "bench-consumer")
    runner = StreamRunner(
        broker,
        client,
        model,
        FixedThreshold(0.6),
        [StreamSink(broker, f"{stream}-out"), *extra_sinks],
        f"{stream}-dead",
        key=key,
        max_events=batch,
        max_wait_ms=max_wait_ms,
        max_in_flight=max_in_flight,
    )
    return runner, broker


def _process_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def _redis_cpu(redis_client: Any) -> float:
    info = redis_client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _cpu(client: Any, redis_client: Any, sql: str | None = None) -> dict[str, float]:
    """CPU seconds so far of this process, the workers, the scheduler, Redis and (with
    ``sql`` on a local PostgreSQL) the PostgreSQL server."""
    workers = client.run(_process_cpu)
    figures = {
        "consumer": _process_cpu(),
        "workers": float(sum(workers.values())),
        "scheduler": float(client.run_on_scheduler(_process_cpu)),
        "redis": _redis_cpu(redis_client),
    }
    postgres = postgres_cpu(sql) if sql else None
    if postgres is not None:
        figures["postgres"] = postgres
    return figures


def _sustained(
    url: str,
    redis_client: Any,
    client: Any,
    model: Any,
    events: int,
    batch: int,
    features: int,
    max_in_flight: int = 4,
    sql: str | None = None,
) -> dict[str, Any]:
    stream = f"adp-bench-{uuid.uuid4().hex[:8]}"
    table = BenchTable(sql) if sql else None
    try:
        rng = np.random.default_rng(1)
        for start in range(0, events, 10_000):  # in chunks: the consumer's RSS stays its own
            rows = rng.normal(size=(min(10_000, events - start), features))
            _write(redis_client, stream, _payloads(rows))
        sinks = (table.sink,) if table else ()
        runner, broker = _runner(url, stream, client, model, batch, [], 100, max_in_flight, sinks)
        before = _cpu(client, redis_client, sql)
        with fewer_collections(), timed() as timer:  # as `adp stream` runs
            stats = runner.run(max_events=events)
        after = _cpu(client, redis_client, sql)
        broker.close()
        written = [redis_client.xlen(f"{stream}-out"), *([table.rows()] if table else [])]
        if stats.results != events or set(written) != {events}:
            raise BenchmarkError(f"{stats.results} results ({written} written) for {events} events")
        cpu_us = {part: (after[part] - before[part]) / events * 1e6 for part in after}
        return {
            "events": events,
            "seconds": timer.seconds,
            "events_per_s": events / timer.seconds,
            "batches": stats.batches,
            "max_in_flight": max_in_flight,
            "cpu_us_per_event": cpu_us,
            "sql": safe_url(sql) if sql else None,
        }
    finally:
        redis_client.delete(stream, f"{stream}-out", f"{stream}-out:adp-published")
        if table is not None:
            table.drop()  # says, rather than raises, when it cannot: the run's error comes first


def produce_and_read(url: str, stream: str, rate: int, total: int, features: int, out: str) -> None:
    """The latency run's producer and reader (a process of their own).

    Writes ``total`` events to ``stream`` at ``rate`` per second, each stamped with its
    write time, printing ``produced`` when done; reads ``<stream>-out`` meanwhile, and
    saves each result's latency (seconds from its event's write to its result being read)
    to ``out`` (NumPy ``.npy``) once every result came, or nothing came for 30 s.
    """
    import redis

    writer, reader = redis.Redis.from_url(url), redis.Redis.from_url(url)
    X = _events(min(total, 50_000), features, 2)
    latencies: list[float] = []

    def read() -> None:
        last, quiet_since = "0", time.monotonic()
        while len(latencies) < total and time.monotonic() - quiet_since < 30:
            reply: Any = reader.xread({f"{stream}-out": last}, count=5000, block=200)
            if reply:
                quiet_since = time.monotonic()
            for _, entries in reply or []:
                now = time.time()
                for entry_id, fields in entries:
                    latencies.append(now - orjson.loads(fields[b"data"])["t"])
                    last = entry_id

    thread = threading.Thread(target=read)
    thread.start()
    tick, sent, start = 0.01, 0, time.monotonic()
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        if due > sent:
            _write(writer, stream, _payloads(X[np.arange(sent, due) % len(X)], stamp=True))
            sent = due
        time.sleep(tick)
    print("produced", flush=True)
    thread.join()
    np.save(out, np.asarray(latencies, dtype=np.float64))


def _latency(
    url: str,
    redis_client: Any,
    client: Any,
    model: Any,
    rate: int,
    seconds: float,
    batch: int,
    features: int,
    max_wait_ms: int,
    max_in_flight: int = 4,
) -> dict[str, Any]:
    stream = f"adp-bench-{uuid.uuid4().hex[:8]}"
    total = int(rate * seconds)
    runner, broker = _runner(url, stream, client, model, batch, ["t"], max_wait_ms, max_in_flight)
    rss_trace: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "latencies.npy")
        args = json.dumps(
            {
                "url": url,
                "stream": stream,
                "rate": rate,
                "total": total,
                "features": features,
                "out": out,
            }
        )
        code = "import json, sys; from adp.bench.streaming import produce_and_read; "
        code += "produce_and_read(**json.loads(sys.argv[1]))"
        try:
            with RssSampler(0.5) as rss:
                load = subprocess.Popen(
                    [sys.executable, "-c", code, args], stdout=subprocess.PIPE, text=True
                )
                watcher = threading.Thread(
                    target=_stop_after, args=(load, runner, total, rss_trace)
                )
                watcher.start()
                with fewer_collections():
                    runner.run()
                watcher.join()
                end_rss = current_rss()
            load.wait(120)
            broker.close()
            latencies = np.load(out) if os.path.exists(out) else np.empty(0)
        finally:
            redis_client.delete(stream, f"{stream}-out", f"{stream}-out:adp-published")
    if len(latencies) != total:
        raise BenchmarkError(f"{len(latencies)} results read for {total} events written")
    ms = latencies * 1000
    quarters = [rss_trace[int(q * (len(rss_trace) - 1))][1] for q in (0.25, 0.5, 0.75, 1.0)]
    return {
        "rate": rate,
        "seconds": seconds,
        "max_wait_ms": max_wait_ms,
        "events": total,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "batches": runner.stats.batches,
        "rss_start_mb": rss.start_bytes / 2**20,
        "rss_quarters_mb": [q / 2**20 for q in quarters] if rss_trace else [],
        "rss_peak_mb": max([rss.max_bytes, *(r for _, r in rss_trace)]) / 2**20,
        "rss_end_mb": end_rss / 2**20,
        "rss_growth_mb": rss.growth_bytes / 2**20,
    }


def _stop_after(
    load: subprocess.Popen[str], runner: Any, total: int, trace: list[tuple[float, int]]
) -> None:
    """Sample the consumer's RSS until the producer is done and every event was taken
    (a runner that cannot keep up drains the backlog first: its latencies then show it),
    then stop ``runner``."""
    output = load.stdout
    assert output is not None
    done = threading.Event()

    def wait_for_producer() -> None:
        output.readline()  # "produced" (or end of file: it died)
        done.set()

    threading.Thread(target=wait_for_producer, daemon=True).start()
    start = time.monotonic()
    while not done.is_set() or (runner.stats.events < total and load.poll() in (None, 0)):
        trace.append((time.monotonic() - start, current_rss()))
        time.sleep(0.5)
    trace.append((time.monotonic() - start, current_rss()))
    runner.stop("bench done")


def _river(events: int, features: int) -> dict[str, Any]:
    from river import anomaly

    X = _events(events + 1000, features, 3)
    rows = [orjson.loads(p) for p in _payloads(X)]
    model = anomaly.HalfSpaceTrees(seed=0)  # River's defaults: 10 trees of height 8
    for row in rows[:1000]:
        model.learn_one(row)
    with timed() as timer:
        for row in rows[1000:]:
            model.score_one(row)
    return {"events": events, "seconds": timer.seconds, "events_per_s": events / timer.seconds}


def bench_stream(
    *,
    events: int = 1_000_000,
    features: int = 20,
    rate: int = 10_000,
    seconds: float = 30.0,
    batch: int = 50_000,
    max_wait_ms: int = 100,
    max_in_flight: int = 4,
    workers: int = 2,
    river_events: int = 20_000,
    train_rows: int = 20_000,
    redis_url: str = "redis://127.0.0.1:6379/0",
    cluster_kind: str = "processes",
    client: Any = None,
    sql: str | None = None,
) -> dict[str, Any]:
    """Run the three phases (see the module) and return their figures."""
    import dask
    import dask.dataframe as dd
    import pandas as pd
    import redis

    import adp
    from adp.stream.model import StreamModel

    if sql is not None:  # a bad URL fails now, before any cluster starts
        BenchTable(sql).sink.close()
    redis_client = redis.Redis.from_url(redis_url)
    train = pd.DataFrame(
        _events(train_rows, features, 0), columns=[f"f{i}" for i in range(features)]
    )
    with dask.config.set(scheduler="sync"):
        detector = adp.create_detector("iforest", random_state=0).fit(
            dd.from_pandas(train, npartitions=2)
        )
    model = StreamModel(detector, "bench", str(detector.model_id_))
    load_before = os.getloadavg()[0]
    if client is not None:
        cluster_kind = "given"
    where = (
        process_cluster(workers)
        if cluster_kind == "processes"
        else cluster(client, n_workers=workers)
    )
    with where as c:
        warm = min(events, 5 * batch)
        _sustained(redis_url, redis_client, c, model, warm, batch, features, max_in_flight, sql)
        sustained = _sustained(
            redis_url, redis_client, c, model, events, batch, features, max_in_flight, sql
        )
        latency = _latency(
            redis_url,
            redis_client,
            c,
            model,
            rate,
            seconds,
            batch,
            features,
            max_wait_ms,
            max_in_flight,
        )
    redis_client.close()
    return {
        "features": features,
        "workers": workers,
        "cluster": cluster_kind,
        "cpus": os.cpu_count(),
        "load_average": [load_before, os.getloadavg()[0]],
        "sustained": sustained,
        "latency": latency,
        "river": _river(river_events, features),
    }


@click.command("stream")
@click.option("--events", default=1_000_000, show_default=True, help="Events of the sustained run.")
@click.option("--features", default=20, show_default=True)
@click.option("--rate", default=10_000, show_default=True, help="Events/s of the latency run.")
@click.option("--seconds", default=30.0, show_default=True, help="Length of the latency run.")
@click.option(
    "--batch",
    default=50_000,
    show_default=True,
    help="Most events per micro-batch (the latency run's batches fill by time, not size).",
)
@click.option(
    "--max-wait-ms",
    default=100,
    show_default=True,
    help="Longest wait for a batch to fill (adp.stream.max-wait-ms's default).",
)
@click.option(
    "--max-in-flight",
    default=4,
    show_default=True,
    help="Batches scored at once (adp.stream.max-in-flight's default).",
)
@click.option("--workers", default=2, show_default=True, help="Local worker processes.")
@click.option("--river-events", default=20_000, show_default=True)
@click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)
@click.option(
    "--cluster",
    "cluster_kind",
    type=click.Choice(["processes", "local"]),
    default="processes",
    show_default=True,
    help="A scheduler process and worker processes, or a LocalCluster in this process.",
)
@click.option(
    "--sql",
    default=None,
    metavar="URL",
    help="Also write the sustained run's results to a table of its own at this SQLAlchemy "
    "URL (PostgreSQL or SQLite; dropped afterwards).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stream(as_json: bool, **options: Any) -> None:
    """Sustained events/s, p50/p99 latency at a fixed rate, consumer RSS, and River's
    HalfSpaceTrees on the same events."""
    from adp.clitools import fail_cleanly

    result = fail_cleanly(bench_stream)(**options)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    s, lat, r = result["sustained"], result["latency"], result["river"]
    cpu = s["cpu_us_per_event"]
    click.echo(
        f"sustained: {s['events']:,} events in {s['seconds']:.1f} s = "
        f"{s['events_per_s']:,.0f} events/s"
        + (f" into Redis and {s['sql']}" if s.get("sql") else "")
        + f" ({s['batches']:,} batches, up to "
        f"{s['max_in_flight']} in flight; {result['features']} features, "
        f"{result['workers']} workers ({result['cluster']}), {result['cpus']} CPUs, load average "
        f"{result['load_average'][0]:.1f})"
    )
    click.echo(
        "  CPU per event: "
        + ", ".join(f"{part} {us:.1f} us" for part, us in cpu.items())
        + f" (total {sum(cpu.values()):.1f} us)"
    )
    click.echo(
        f"latency at {lat['rate']:,} events/s for {lat['seconds']:.0f} s (batches fill for "
        f"up to {lat['max_wait_ms']} ms; {lat['batches']:,} batches): p50 "
        f"{lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
    )
    quarters = ", ".join(f"{q:.0f}" for q in lat["rss_quarters_mb"])
    click.echo(
        f"consumer RSS: {lat['rss_start_mb']:.0f} MB at start, {quarters} MB at each "
        f"quarter of the run, {lat['rss_peak_mb']:.0f} MB at peak"
    )
    click.echo(f"River HalfSpaceTrees.score_one, one thread: {r['events_per_s']:,.0f} events/s")

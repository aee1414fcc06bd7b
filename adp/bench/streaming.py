"""``adp bench stream``: streaming detection on the machine's Redis (issue 14, point 8).

One run, on a LocalCluster of ``--workers`` single-threaded worker processes, with an
isolation forest fitted on 20,000 random rows of ``--features`` features:

1. **sustained**: ``--events`` events are written to a fresh Redis stream first, then one
   consumer (:class:`adp.stream.runner.StreamRunner`, batches of ``--batch``) scores them
   all and publishes every result to an output stream; events/s = events / wall time.
2. **latency**: a producer thread writes events at ``--rate`` per second for ``--seconds``
   (each carries its write time); a reader thread reads the output stream as results
   arrive; a result's latency is the time from its event's write to its result being
   readable. The consumer's resident memory is sampled throughout (start, peak, end: a
   flat RSS over a long run shows bounded memory).
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
import threading
import time
import uuid
from typing import Any

import click
import numpy as np

from adp.bench.measure import RssSampler, cluster, current_rss, timed
from adp.errors import BenchmarkError

__all__ = ["bench_stream", "stream"]


def _events(rows: int, features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, features))


def _payloads(X: np.ndarray, stamp: bool = False) -> list[bytes]:
    names = [f"f{i}" for i in range(X.shape[1])]
    out = []
    for row in X.tolist():
        event: dict[str, Any] = dict(zip(names, row, strict=True))
        if stamp:
            event["t"] = time.time()
        out.append(json.dumps(event).encode())
    return out


def _write(redis_client: Any, stream: str, payloads: list[bytes]) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for payload in payloads:
        pipe.xadd(stream, {"data": payload})
    pipe.execute()


def _runner(
    url: str, stream: str, client: Any, model: Any, batch: int, key: list[str]
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
        [StreamSink(broker, f"{stream}-out")],
        f"{stream}-dead",
        key=key,
        max_events=batch,
        max_wait_ms=50,
        max_in_flight=4,
    )
    return runner, broker


def _sustained(
    url: str, redis_client: Any, client: Any, model: Any, events: int, batch: int, features: int
) -> dict[str, Any]:
    stream = f"adp-bench-{uuid.uuid4().hex[:8]}"
    try:
        _write(redis_client, stream, _payloads(_events(events, features, 1)))
        runner, broker = _runner(url, stream, client, model, batch, [])
        with timed() as timer:
            stats = runner.run(max_events=events)
        broker.close()
        if stats.results != events or redis_client.xlen(f"{stream}-out") != events:
            raise BenchmarkError(f"{stats.results} results for {events} events")
        return {"events": events, "seconds": timer.seconds, "events_per_s": events / timer.seconds}
    finally:
        redis_client.delete(stream, f"{stream}-out", f"{stream}-out:adp-published")


def _latency(
    url: str,
    redis_client: Any,
    client: Any,
    model: Any,
    rate: int,
    seconds: float,
    batch: int,
    features: int,
) -> dict[str, Any]:
    stream = f"adp-bench-{uuid.uuid4().hex[:8]}"
    total = int(rate * seconds)
    X = _events(min(total, 50_000), features, 2)
    latencies: list[float] = []
    produced = threading.Event()
    runner, broker = _runner(url, stream, client, model, batch, ["t"])

    def produce() -> None:
        tick, sent, start = 0.01, 0, time.monotonic()
        while sent < total:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                rows = X[np.arange(sent, due) % len(X)]
                _write(redis_client, stream, _payloads(rows, stamp=True))
                sent = due
            time.sleep(tick)
        produced.set()

    def read() -> None:
        last = "0"
        quiet_since = time.monotonic()
        while len(latencies) < total and time.monotonic() - quiet_since < 30:
            reply = redis_client.xread({f"{stream}-out": last}, count=5000, block=200)
            if reply or not runner.stopping:
                quiet_since = time.monotonic()
            for _, entries in reply or []:
                now = time.time()
                for entry_id, fields in entries:
                    latencies.append(now - json.loads(fields[b"data"])["t"])
                    last = entry_id

    threads = [threading.Thread(target=produce), threading.Thread(target=read)]
    try:
        with RssSampler(0.5) as rss:
            for thread in threads:
                thread.start()
            watcher = threading.Thread(target=_stop_after, args=(produced, runner, total))
            watcher.start()
            runner.run()
            watcher.join()
            for thread in threads:
                thread.join()
            end_rss = current_rss()
        broker.close()
    finally:
        redis_client.delete(stream, f"{stream}-out", f"{stream}-out:adp-published")
    if len(latencies) != total:
        raise BenchmarkError(f"{len(latencies)} results read for {total} events written")
    ms = np.asarray(latencies) * 1000
    return {
        "rate": rate,
        "seconds": seconds,
        "events": total,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "rss_start_mb": rss.start_bytes / 2**20,
        "rss_peak_mb": rss.max_bytes / 2**20,
        "rss_end_mb": end_rss / 2**20,
        "rss_growth_mb": rss.growth_bytes / 2**20,
    }


def _stop_after(produced: threading.Event, runner: Any, total: int) -> None:
    """Stop ``runner`` once the producer is done and every event was taken (a runner that
    cannot keep up drains the backlog first: its latencies then show it)."""
    produced.wait()
    while runner.stats.events < total:
        time.sleep(0.05)
    runner.stop("bench done")


def _river(events: int, features: int) -> dict[str, Any]:
    from river import anomaly

    X = _events(events + 1000, features, 3)
    rows = [json.loads(p) for p in _payloads(X)]
    model = anomaly.HalfSpaceTrees(seed=0)  # River's defaults: 10 trees of height 8
    for row in rows[:1000]:
        model.learn_one(row)
    with timed() as timer:
        for row in rows[1000:]:
            model.score_one(row)
    return {"events": events, "seconds": timer.seconds, "events_per_s": events / timer.seconds}


def bench_stream(
    *,
    events: int = 100_000,
    features: int = 20,
    rate: int = 10_000,
    seconds: float = 30.0,
    batch: int = 5_000,
    workers: int = 2,
    river_events: int = 20_000,
    train_rows: int = 20_000,
    redis_url: str = "redis://127.0.0.1:6379/0",
    client: Any = None,
) -> dict[str, Any]:
    """Run the three phases (see the module) and return their figures."""
    import dask
    import dask.dataframe as dd
    import pandas as pd
    import redis

    import adp
    from adp.stream.model import StreamModel

    redis_client = redis.Redis.from_url(redis_url)
    train = pd.DataFrame(
        _events(train_rows, features, 0), columns=[f"f{i}" for i in range(features)]
    )
    with dask.config.set(scheduler="sync"):
        detector = adp.create_detector("iforest", random_state=0).fit(
            dd.from_pandas(train, npartitions=2)
        )
    model = StreamModel(detector, "bench", str(detector.model_id_))
    with cluster(client, n_workers=workers) as c:
        _sustained(redis_url, redis_client, c, model, min(events, 5 * batch), batch, features)
        sustained = _sustained(redis_url, redis_client, c, model, events, batch, features)
        latency = _latency(redis_url, redis_client, c, model, rate, seconds, batch, features)
    redis_client.close()
    return {
        "features": features,
        "workers": workers,
        "sustained": sustained,
        "latency": latency,
        "river": _river(river_events, features),
    }


@click.command("stream")
@click.option("--events", default=100_000, show_default=True, help="Events of the sustained run.")
@click.option("--features", default=20, show_default=True)
@click.option("--rate", default=10_000, show_default=True, help="Events/s of the latency run.")
@click.option("--seconds", default=30.0, show_default=True, help="Length of the latency run.")
@click.option("--batch", default=5_000, show_default=True, help="Events per micro-batch.")
@click.option("--workers", default=2, show_default=True, help="Local worker processes.")
@click.option("--river-events", default=20_000, show_default=True)
@click.option("--redis", "redis_url", default="redis://127.0.0.1:6379/0", show_default=True)
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
    click.echo(
        f"sustained: {s['events']:,} events in {s['seconds']:.1f} s = "
        f"{s['events_per_s']:,.0f} events/s ({result['features']} features, "
        f"{result['workers']} workers)"
    )
    click.echo(
        f"latency at {lat['rate']:,} events/s for {lat['seconds']:.0f} s: p50 "
        f"{lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, max {lat['max_ms']:.0f} ms"
    )
    click.echo(
        f"consumer RSS: {lat['rss_start_mb']:.0f} MB at start, {lat['rss_peak_mb']:.0f} MB "
        f"at peak, {lat['rss_end_mb']:.0f} MB at the end"
    )
    click.echo(f"River HalfSpaceTrees.score_one, one thread: {r['events_per_s']:,.0f} events/s")

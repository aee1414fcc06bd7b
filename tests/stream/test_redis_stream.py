"""Streams on the machine's real Redis, scored on a real (in-process) Dask cluster: dead
letters, exact scores, idempotent sinks, acknowledgement after commit, backpressure,
metrics and audit records."""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from stream_helpers import (
    FEATURES,
    SlowScorer,
    Training,
    events_frame,
    payloads,
    spec_dict,
    unique,
    xadd_all,
)

from adp.errors import SourceError
from adp.observe.audit import AuditLog
from adp.stream.api import StreamResult, run_stream
from adp.stream.brokers.redis_streams import RedisStreamsBroker
from adp.stream.sinks import SqlSink

#: Bad messages, each with a fragment of the reason its dead letter must give.
BAD = [
    (b"not json at all", "not JSON"),
    (b"[1, 2, 3]", "not a JSON object: got an array"),
    (b'{"f0": "x", "f1": 1, "f2": 1, "f3": 1, "sensor": "s", "row": -1}', "'f0' is not a number"),
    (b'{"f0": 1, "f1": 1, "f2": 1, "sensor": "s", "row": -2}', "missing feature 'f3'"),
    (b'{"f0": 1, "f1": null, "f2": 1, "f3": 1, "sensor": "s", "row": -3}', "'f1' is null"),
    (b'{"f0": 1, "f1": 1, "f2": true, "f3": 1, "sensor": "s", "row": -4}', "'f2' is not a number"),
    (b'{"f0": 1, "f1": 1, "f2": 1, "f3": 1, "row": -5}', "missing key 'sensor'"),
]


def _metric(client: Any, name: str) -> float:
    """A sample's value on the scheduler's real ``/metrics`` page (0 when absent)."""
    url = client.dashboard_link.rsplit("/", 1)[0] + "/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@dataclass
class DeadLetterRun:
    events: pd.DataFrame
    good_ids: list[str]
    bad_ids: list[str]
    result: StreamResult
    results: pd.DataFrame
    dead: list[dict[str, Any]]
    out_length: int
    pending: int
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]


@pytest.fixture(scope="module")
def dead_letter_run(
    redis_client: Any, stream_client: Any, training: Training, tmp_path_factory: Any
) -> Iterator[DeadLetterRun]:
    """One run over 600 good events with the bad messages spread among them."""
    stream = unique("adp-test")
    events = events_frame(600, seed=2)
    items = payloads(events)
    positions = [50, 120, 199, 200, 333, 480, 599]
    mixed: list[bytes] = []
    for i, item in enumerate(items):
        mixed.append(item)
        if i in positions:
            mixed.append(BAD[positions.index(i)][0])
    ids = xadd_all(redis_client, stream, mixed)
    bad_set = {BAD[k][0] for k in range(len(BAD))}
    good_ids = [i for i, m in zip(ids, mixed, strict=True) if m not in bad_set]
    bad_ids = [i for i, m in zip(ids, mixed, strict=True) if m in bad_set]
    db = tmp_path_factory.mktemp("sink") / "results.db"
    spec = spec_dict(
        stream,
        training,
        sinks={
            "sql": {"url": f"sqlite:///{db}", "table": "results"},
            "stream": {"stream": f"{stream}-out"},
        },
    )
    names = ("adp_stream_events_total", "adp_stream_dead_letters_total", "adp_stream_batches_total")
    before = {n: _metric(stream_client, n) for n in names}
    try:
        # Each batch travels in its task: at a 16 kB threshold dask would warn for every one.
        with (
            warnings.catch_warnings(record=True) as caught,
            dask.config.set({"distributed.admin.large-graph-warning-threshold": "16kB"}),
        ):
            warnings.simplefilter("always")
            result = run_stream(spec, client=stream_client, until_idle=0.5)
        assert not [str(w.message)[:60] for w in caught if "large graph" in str(w.message)]
        after = {n: _metric(stream_client, n) for n in names}
        results = pd.read_sql_table("results", sa.create_engine(f"sqlite:///{db}"))
        dead = [
            {"id": fields[b"message_id"].decode(), **json.loads(fields[b"data"])}
            for _, fields in redis_client.xrange(f"{stream}-dead")
        ]
        yield DeadLetterRun(
            events,
            good_ids,
            bad_ids,
            result,
            results,
            dead,
            redis_client.xlen(f"{stream}-out"),
            redis_client.xpending(stream, "adp")["pending"],
            before,
            after,
        )
    finally:
        redis_client.delete(*redis_client.scan_iter(match=f"{stream}*"))


def test_bad_messages_become_dead_letters_with_reasons_and_the_rest_is_scored(
    dead_letter_run: DeadLetterRun,
) -> None:
    run = dead_letter_run
    stats = run.result.stats
    assert stats.events == len(run.good_ids) + len(run.bad_ids)
    assert (stats.results, stats.dead_letters) == (len(run.good_ids), len(run.bad_ids))
    assert [d["id"] for d in run.dead] == run.bad_ids
    for letter, (payload, reason) in zip(run.dead, BAD, strict=True):
        assert reason in letter["reason"], letter
        assert letter["message_id"] == letter["id"]
        assert letter["data"] == payload.decode()
    assert sorted(run.results["message_id"]) == sorted(run.good_ids)
    assert run.out_length == len(run.good_ids)
    assert run.pending == 0  # every message acknowledged, dead letters too


def test_stream_scores_equal_batch_scores_and_the_fitted_threshold(
    dead_letter_run: DeadLetterRun, training: Training, stream_client: Any
) -> None:
    run = dead_letter_run
    rows = run.results.set_index("row").sort_index()
    with stream_client.as_current():
        batch = (
            training.detector.decision_function(dd.from_pandas(run.events[FEATURES], npartitions=3))
            .compute()
            .sort_index()
        )
        train = training.detector.decision_function(dd.from_pandas(training.frame, npartitions=2))
        train_scores = np.sort(train.compute().to_numpy())[::-1]
    assert list(rows.index) == list(run.events["row"])
    assert np.max(np.abs(rows["score"].to_numpy() - batch.to_numpy())) <= 1e-12
    expected = train_scores[math.ceil(0.05 * len(train_scores)) - 1]  # the 150th largest
    assert np.allclose(rows["threshold"], expected, rtol=0, atol=1e-12)
    assert (rows["is_anomaly"] == (rows["score"] >= expected)).all()
    assert rows["is_anomaly"].any()
    assert list(rows["sensor"]) == list(run.events["sensor"])
    assert (rows["model"] == training.ref).all()


def test_the_run_is_counted_on_the_schedulers_metrics_and_audited(
    dead_letter_run: DeadLetterRun, training: Training
) -> None:
    run = dead_letter_run
    delta = {k: run.metrics_after[k] - run.metrics_before[k] for k in run.metrics_after}
    assert delta["adp_stream_events_total"] == len(run.good_ids) + len(run.bad_ids)
    assert delta["adp_stream_dead_letters_total"] == len(run.bad_ids)
    assert delta["adp_stream_batches_total"] == run.result.stats.batches
    with AuditLog() as log:
        records = log.records(job_id=run.result.stream_id)
    kinds = [(r.event_type, r.outcome) for r in records]
    assert kinds[0] == ("stream.run", "started")
    assert kinds[-1] == ("stream.run", "success")
    assert ("stream.model", "success") in kinds and ("stream.stop", "success") in kinds
    model = next(r for r in records if r.event_type == "stream.model")
    assert json.loads(model.details or "{}")["model"] == training.ref == run.result.model
    threshold = next(r for r in records if r.event_type == "stream.threshold")
    assert json.loads(threshold.details or "{}")["kind"] == "fitted"
    stop = next(r for r in records if r.event_type == "stream.stop")
    assert json.loads(stop.details or "{}")["results"] == len(run.good_ids)


def _results(n: int, score: float, start: int = 0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "sensor": [f"s{i}" for i in range(start, start + n)],
            "score": np.full(n, score),
            "is_anomaly": np.zeros(n, dtype=bool),
            "threshold": np.full(n, 1.0),
            "model": "m@1",
            "event_time": pd.Timestamp("2026-01-01", tz="UTC"),
            "scored_at": pd.Timestamp.now(tz="UTC"),
        },
        index=pd.Index([f"{i}-0" for i in range(start, start + n)], name="message_id"),
    )
    return frame


def _check_idempotent(url: str, table: str) -> None:
    sink = SqlSink(url, table, key=["sensor"])
    sink.write(_results(50, 0.25))
    sink.write(_results(50, 0.25))  # redelivered: nothing new
    sink.write(_results(50, 0.75, start=25))  # half seen before
    rows = pd.read_sql_table(table, sa.create_engine(url)).set_index("message_id")
    assert len(rows) == 75 and rows.index.is_unique
    assert (rows.loc[[f"{i}-0" for i in range(50)], "score"] == 0.25).all()  # the first kept
    assert (rows.loc[[f"{i}-0" for i in range(50, 75)], "score"] == 0.75).all()


def test_sql_sink_is_idempotent_on_sqlite(tmp_path: Path) -> None:
    _check_idempotent(f"sqlite:///{tmp_path / 'r.db'}", "results")


@pytest.mark.postgres
def test_sql_sink_is_idempotent_on_postgresql(pg_url: str, table_name: str) -> None:
    _check_idempotent(pg_url, table_name)


class _PendingChecker:
    """A sink that checks, as it commits, that the batch is still pending in Redis."""

    name = "checker"

    def __init__(self, redis_client: Any, stream: str, fail_on: int | None = None) -> None:
        self.redis, self.stream, self.fail_on = redis_client, stream, fail_on
        self.batches: list[list[str]] = []
        self.unacked_at_commit: list[bool] = []

    def write(self, results: pd.DataFrame) -> None:
        pending = self.redis.xpending_range(self.stream, "adp", "-", "+", 100_000)
        ids = {p["message_id"].decode() for p in pending}
        self.unacked_at_commit.append(set(results.index) <= ids)
        if self.fail_on is not None and len(self.batches) + 1 == self.fail_on:
            raise SourceError("the sink's database went away")
        self.batches.append(list(results.index))

    def close(self) -> None:
        pass


def test_messages_are_acknowledged_only_after_every_sink_committed(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    events = events_frame(1000, seed=3)
    ids = xadd_all(redis_client, redis_stream, payloads(events))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    spec = spec_dict(
        redis_stream,
        training,
        threshold={"kind": "fixed", "score": 0.6},
        sinks={"sql": {"url": db, "table": "results"}},
    )
    failing = _PendingChecker(redis_client, redis_stream, fail_on=3)
    with pytest.raises(SourceError, match="went away"):
        run_stream(spec, client=stream_client, sinks=[failing], until_idle=0.5)
    assert failing.unacked_at_commit == [True, True, True]
    acked = {i for batch in failing.batches for i in batch}
    pending = {
        p["message_id"].decode()
        for p in redis_client.xpending_range(redis_stream, "adp", "-", "+", 100_000)
    }
    assert len(acked) == 400 and not acked & pending  # two batches of 200 committed, acked
    assert pending  # the failed batch (committed to SQL, not to the checker) waits

    checker = _PendingChecker(redis_client, redis_stream)
    result = run_stream(spec, client=stream_client, sinks=[checker], until_idle=0.5)
    assert all(checker.unacked_at_commit)
    assert result.stats.reclaimed >= len(pending)  # this consumer's own pending, re-read
    assert redis_client.xpending(redis_stream, "adp")["pending"] == 0
    rows = pd.read_sql_table("results", sa.create_engine(db))
    assert sorted(rows["message_id"]) == sorted(ids)  # one row each, though some twice written


def test_a_slow_cluster_keeps_batches_in_flight_bounded(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training
) -> None:
    import copy

    from adp.models.api import register

    slow = copy.deepcopy(training.detector)
    slow.scorer_ = SlowScorer(slow.scorer_, 0.25)
    slow.model_id_ = uuid.uuid4().hex
    ref = register(slow, unique("slow-model")).ref
    xadd_all(redis_client, redis_stream, payloads(events_frame(3000, seed=4)))
    spec = spec_dict(
        redis_stream,
        training,
        model=ref,
        threshold={"kind": "fixed", "score": 0.6},
        batch={"max_events": 100, "max_wait_ms": 20, "max_in_flight": 2},
    )
    most_pending, done = [0], threading.Event()

    def sample() -> None:
        import redis

        while not done.is_set():
            try:
                info = redis_client.xpending(redis_stream, "adp")
            except redis.ResponseError:  # the group is not created yet
                info = {"pending": 0}
            most_pending[0] = max(most_pending[0], int(info["pending"]))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = run_stream(spec, client=stream_client, max_events=1200)
    finally:
        done.set()
        sampler.join()
    broker = RedisStreamsBroker(
        "redis://127.0.0.1:6379/0", redis_stream, "adp", "probe", claim_idle_ms=60_000
    )
    lag = broker.lag()
    broker.close()
    assert result.stats.max_in_flight == 2
    assert 0 < most_pending[0] <= 2 * 100  # delivered, unacknowledged: never more
    assert result.stats.results == 1200
    assert lag == 3000 - 1200  # the backlog waits in Redis, not in the consumer


def test_an_unreachable_broker_is_named_without_its_password(
    stream_client: Any, training: Training
) -> None:
    spec = spec_dict("nowhere", training, threshold={"kind": "fixed", "score": 0.5})
    spec["source"]["url"] = "redis://:hunter2@127.0.0.1:1/0"
    with pytest.raises(
        SourceError, match=r"cannot connect to Redis at redis://:\*\*\*@127.0.0.1:1/0"
    ) as info:
        run_stream(spec, client=stream_client)
    assert "hunter2" not in str(info.value)

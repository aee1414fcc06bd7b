"""`adp stream` as a process: killed with SIGKILL mid-batch while events flow, restarted,
nothing lost or doubled, per-key windows continuing from their saved state; stopped with
SIGTERM, exit 0 with everything acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from stream_helpers import (
    FEATURES,
    REDIS_URL,
    Training,
    events_frame,
    payloads,
    spec_dict,
    unique,
    xadd_all,
)

from adp.stream.window_store import RedisWindowStore
from adp.stream.windows import WindowShape, window_features

ADP = str(Path(sys.executable).with_name("adp"))


def _spec_file(
    tmp_path: Path,
    stream: str,
    training: Training,
    db: str,
    consumer: str,
    *,
    table: str = "results",
    batch: int = 250,
) -> Path:
    spec = spec_dict(
        stream,
        training,
        threshold={"kind": "fixed", "score": 0.6},
        sinks={"sql": {"url": db, "table": table}},
        batch={"max_events": batch, "max_wait_ms": 50, "max_in_flight": 2},
    )
    spec["source"]["consumer"] = consumer
    path = tmp_path / f"{consumer}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _start(spec: Path, scheduler: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [ADP, "stream", str(spec), "--scheduler", scheduler, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _rows(engine: sa.Engine, table: str = "results") -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"select count(*) from {table}")).scalar_one())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):  # no table yet
        return 0


def _pending(redis_client: Any, stream: str, consumer: str | None = None) -> int:
    """Messages delivered and not acknowledged: in the group, or held by ``consumer``."""
    try:
        summary = redis_client.xpending(stream, "adp")
    except Exception:  # the group is not created yet
        return 0
    if consumer is None:
        return int(summary["pending"])
    held = {c["name"].decode(): int(c["pending"]) for c in summary["consumers"] or []}
    return held.get(consumer, 0)


def _kill_three_times_then_finish(
    redis_client: Any,
    stream: str,
    scheduler: str,
    training: Training,
    tmp_path: Path,
    *,
    db: str,
    table: str,
    total: int,
    chunk: int,
    pause: float,
    batch: int,
) -> None:
    """Produce ``total`` events, ``chunk`` every ``pause`` seconds, while ``adp stream``
    is killed (SIGKILL) three times holding messages it had fetched and not acknowledged
    (a kill that found it between batches does not count); each life has another consumer
    name, so its heirs must claim what it held. A last consumer drains the stream: every
    event has exactly one result row."""
    items = payloads(events_frame(total, seed=5))
    ids: list[str] = []

    def produce() -> None:
        for i in range(0, total, chunk):
            ids.extend(xadd_all(redis_client, stream, items[i : i + chunk]))
            time.sleep(pause)

    engine = sa.create_engine(db)
    producer = threading.Thread(target=produce)
    producer.start()
    held_at_death: list[int] = []

    def spec(name: str) -> Path:
        return _spec_file(tmp_path, stream, training, db, name, table=table, batch=batch)

    try:
        for life in range(8):
            name = f"c{life}"
            proc = _start(spec(name), scheduler)
            before, deadline = _rows(engine, table), time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if _rows(engine, table) > before + batch and _pending(redis_client, stream, name):
                    break  # it has fetched messages it has not acknowledged: mid-batch
                time.sleep(0.01)
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            held = _pending(redis_client, stream, name)
            if held:
                held_at_death.append(held)
            if len(held_at_death) == 3:
                break
    finally:
        producer.join()
    assert len(held_at_death) == 3, held_at_death
    final = _start(spec("final"), scheduler, "--until-idle", "2")
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    rows = pd.read_sql_table(table, engine)
    assert len(ids) == total
    assert rows["message_id"].is_unique
    assert sorted(rows["message_id"]) == sorted(ids)  # every event exactly once
    assert _pending(redis_client, stream) == 0
    assert redis_client.xlen(f"{stream}-dead") == 0


@pytest.mark.slow
def test_a_consumer_killed_mid_batch_loses_and_doubles_nothing(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    _kill_three_times_then_finish(
        redis_client,
        redis_stream,
        stream_client.scheduler.address,
        training,
        tmp_path,
        db=f"sqlite:///{tmp_path / 'results.db'}",
        table="results",
        total=12_000,
        chunk=500,
        pause=0.4,
        batch=250,
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_100k_events_with_three_kills_end_with_one_row_each_in_postgresql(
    redis_client: Any,
    redis_stream: str,
    stream_client: Any,
    training: Training,
    tmp_path: Path,
    pg_url: str,
    table_name: str,
) -> None:
    # The figure: 100,000 events, the consumer killed three times mid-batch while
    # they flow, into PostgreSQL (batches of 2,000, written with COPY).
    _kill_three_times_then_finish(
        redis_client,
        redis_stream,
        stream_client.scheduler.address,
        training,
        tmp_path,
        db=pg_url,
        table=table_name,
        total=100_000,
        chunk=5_000,
        pause=0.5,
        batch=2_000,
    )


@pytest.mark.slow
def test_sigterm_finishes_the_batches_in_flight_acknowledges_and_exits_0(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    xadd_all(redis_client, redis_stream, payloads(events_frame(8_000, seed=6)))
    db = f"sqlite:///{tmp_path / 'results.db'}"
    engine = sa.create_engine(db)
    proc = _start(
        _spec_file(tmp_path, redis_stream, training, db, "term"), stream_client.scheduler.address
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None and _rows(engine) < 1000:
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()[1]
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped by signal SIGTERM" in out
    assert "Traceback" not in err
    groups = {g["name"].decode(): g for g in redis_client.xinfo_groups(redis_stream)}
    delivered = int(groups["adp"]["entries-read"])
    assert _pending(redis_client, redis_stream) == 0  # every delivered message acknowledged
    assert 1000 <= _rows(engine) == delivered < 8_000  # and each has its result


@pytest.mark.slow
def test_windows_continue_from_their_saved_state_after_kills(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    # A windowed stream killed twice mid-batch and restarted under the same consumer name
    # (windows need one consumer, reading its own pending events first): every event's
    # result is the batch score of the features the windows would have given it in one
    # uninterrupted pass, and every event joined its sensor's window exactly once.
    import adp
    from adp.models.api import register

    shape = WindowShape(("sensor",), 20, 5, ("f0", "f1"), ("mean", "std", "diff_from_mean"))
    features = [*FEATURES, *shape.names]
    train = window_features(events_frame(3000, seed=11), shape)
    with stream_client.as_current():
        detector = adp.create_detector("iforest", random_state=0).fit(
            dd.from_pandas(train[features], npartitions=2)
        )
    ref = register(detector, unique("window-model")).ref
    total, chunk = 4000, 400
    events = events_frame(total, seed=12)
    items = payloads(events)

    def produce() -> None:
        for i in range(0, total, chunk):
            xadd_all(redis_client, redis_stream, items[i : i + chunk])
            time.sleep(0.3)

    db = f"sqlite:///{tmp_path / 'results.db'}"
    engine = sa.create_engine(db)
    spec = spec_dict(
        redis_stream,
        training,
        model=ref,
        threshold={"kind": "fixed", "score": 0.6},
        sinks={"sql": {"url": db, "table": "results"}},
        batch={"max_events": 200, "max_wait_ms": 50, "max_in_flight": 2},
        window={"by": "sensor", "size": 20, "slide": 5, "columns": ["f0", "f1"]},
    )
    spec["source"]["consumer"] = "windowed"
    path = tmp_path / "windowed.yaml"
    path.write_text(yaml.safe_dump(spec))
    scheduler = stream_client.scheduler.address
    producer = threading.Thread(target=produce)
    producer.start()
    kills = 0
    try:
        for _ in range(6):
            proc = _start(path, scheduler)
            before, deadline = _rows(engine), time.monotonic() + 90
            while time.monotonic() < deadline and proc.poll() is None:
                if _rows(engine) > before + 200 and _pending(redis_client, redis_stream):
                    break  # mid-batch: it holds events it has not acknowledged
                time.sleep(0.01)
            assert proc.poll() is None, proc.communicate()[1]
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            kills += bool(_pending(redis_client, redis_stream))
            if kills == 2:
                break
    finally:
        producer.join()
    assert kills == 2
    final = _start(path, scheduler, "--until-idle", "2")
    out, err = final.communicate(timeout=180)
    assert final.returncode == 0, err

    rows = pd.read_sql_table("results", engine).set_index("row").sort_index()
    assert list(rows.index) == list(range(total))  # every event, once
    with stream_client.as_current():
        whole = window_features(events, shape)[features]
        expected = detector.decision_function(dd.from_pandas(whole, npartitions=3)).compute()
    assert np.max(np.abs(rows["score"].to_numpy() - expected.sort_index().to_numpy())) <= 1e-12
    store = RedisWindowStore(REDIS_URL, f"{redis_stream}:adp-windows:adp")
    saved = store.load()
    store.close()
    counts = {k: json.loads(v)["count"] for k, v in saved.items() if k != "__window__"}
    assert counts == {json.dumps([s]): n for s, n in events["sensor"].value_counts().items()}

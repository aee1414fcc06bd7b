"""A stream from NATS JetStream end to end, and a stream that fits its own model with an
adaptive threshold and a drift check that requests a refit, audited."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import sqlalchemy as sa
import yaml
from stream_helpers import (
    FEATURES,
    NATS_URL,
    Training,
    events_frame,
    nats_delete,
    nats_publish,
    nats_read,
    nats_setup,
    payloads,
    spec_dict,
    unique,
    xadd_all,
)

from adp.jobs.spec import JobSpec
from adp.observe.audit import AuditLog
from adp.stream.api import run_stream


def test_a_jetstream_stream_is_scored_exactly_with_dead_letters(
    nats_ok: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    name = unique("ADPT").replace("-", "_")
    subject, out, dead = (f"adpt.{name}.{part}" for part in ("in", "out", "dead"))
    nats_setup({name: [subject], f"{name}_OUT": [out], f"{name}_DEAD": [dead]})
    try:
        events = events_frame(400, seed=7)
        seqs = nats_publish(subject, [*payloads(events), b"{broken", b'{"f0": 1}'])
        db = f"sqlite:///{tmp_path / 'r.db'}"
        spec = spec_dict(
            name,
            training,
            source={"kind": "nats", "url": NATS_URL, "stream": name, "ack_wait_seconds": 5},
            sinks={"sql": {"url": db, "table": "results"}, "stream": {"stream": out}},
            dead_letter={"stream": dead},
        )
        result = run_stream(spec, client=stream_client, until_idle=0.5)
        stored_out, stored_dead = nats_read(f"{name}_OUT"), nats_read(f"{name}_DEAD")
    finally:
        nats_delete([name, f"{name}_OUT", f"{name}_DEAD"])
    assert (result.stats.results, result.stats.dead_letters) == (400, 2)
    reasons = [json.loads(data)["reason"] for _, data in stored_dead]
    assert reasons[0].startswith("not JSON") and reasons[1] == "missing feature 'f1'"
    rows = pd.read_sql_table("results", sa.create_engine(db)).set_index("row").sort_index()
    assert list(rows["message_id"]) == [str(s) for s in seqs[:400]]
    with stream_client.as_current():
        batch = training.detector.decision_function(dd.from_pandas(events[FEATURES], npartitions=2))
        expected = batch.compute().sort_index().to_numpy()
    assert np.max(np.abs(rows["score"].to_numpy() - expected)) <= 1e-12
    published = [json.loads(data) for _, data in stored_out]
    assert [p["message_id"] for p in published] == [str(s) for s in seqs[:400]]
    assert published[0]["score"] == rows["score"].iloc[0]


def test_a_fitted_model_with_an_adaptive_threshold_and_drift_is_audited(
    redis_client: Any, redis_stream: str, stream_client: Any, training: Training, tmp_path: Path
) -> None:
    normal = events_frame(1500, seed=8)
    shifted = events_frame(1500, seed=9)
    shifted[FEATURES] += 3.0  # the world changed: scores drift up
    xadd_all(redis_client, redis_stream, payloads(pd.concat([normal, shifted])))
    spec = spec_dict(
        redis_stream,
        training,
        model=None,
        fit={
            "source": {"uri": str(training.path)},
            "detector": {"name": "iforest", "params": {"random_state": 0}},
        },
        threshold={"kind": "quantile", "q": 0.99, "window": 1000, "warmup": 100},
        drift={"method": "psi", "window": 500, "every": 500, "refit": True},
        batch={"max_events": 250, "max_wait_ms": 20, "max_in_flight": 2},
    )
    refits = tmp_path / "refits"
    with dask.config.set(
        {"adp.stream.threshold-audit-seconds": 0, "adp.stream.refit-dir": str(refits)}
    ):
        result = run_stream(spec, client=stream_client, until_idle=0.5)
    assert result.model == "fit:isolation_forest"
    assert result.stats.results == 3000 and result.stats.drift_alerts == 1
    with AuditLog() as log:
        records = log.records(job_id=result.stream_id)
    by_type: dict[str, list[Any]] = {}
    for record in records:
        by_type.setdefault(record.event_type, []).append(json.loads(record.details or "{}"))
    assert by_type["stream.model"][0]["calibrated_on"] == str(training.path)
    start = by_type["stream.threshold"][0]
    assert start["kind"] == "quantile" and math.isfinite(start["value"])  # from training scores
    moves = by_type["stream.threshold"][1:]
    assert moves and all(m["to"] > m["from"] for m in moves[-1:])  # it followed the shift
    assert by_type["stream.drift"][0]["statistic"] > 0.2
    # drift asked for a refit: one request, audited, whose job `adp run` accepts
    (path,) = refits.glob("*.yaml")
    assert [r["path"] for r in by_type["stream.refit"]] == [str(path)]
    assert path.stat().st_mode & 0o777 == 0o600
    request = yaml.safe_load(path.read_text())
    assert request["kind"] == "adp-refit-request" and request["stream"]["run"] == result.stream_id
    assert request["drift"]["statistic"] == by_type["stream.drift"][0]["statistic"]
    job = JobSpec.from_dict(request["job"])
    assert job.source.uri == str(training.path)
    assert job.detector is not None and job.detector.name == "iforest"
    assert job.detector.params == {"random_state": 0}

"""Streams submitted to the service like jobs: governed by the policy (``stream:read`` of
the source, ``stream:write`` of the streams written), driven on the cluster with the
caller's identity in every audit record, followed on ``GET /jobs/{id}``, and stopped by a
cancel after their in-flight batches are acknowledged."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from ci_support import need_in_ci
from service_site import Site, start_site, wait_for

pytestmark = pytest.mark.slow

REDIS = "redis://127.0.0.1:6379/0"
POLICY = """
roles:
  analyst:
    allow: ["jobs:submit", "data:read:{lake}/**", "data:write:sql://{out}/**",
            "stream:read:redis://127.0.0.1:6379/adp-svc-*",
            "stream:write:redis://127.0.0.1:6379/adp-svc-*"]
  reader:
    allow: ["jobs:submit", "data:read:{lake}/**", "data:write:sql://{out}/**",
            "stream:write:redis://127.0.0.1:6379/adp-svc-*"]
  operator:
    allow: ["*"]
"""


@pytest.fixture
def redis_client() -> Iterator[Any]:
    import redis

    client = redis.Redis.from_url(REDIS)
    try:
        client.ping()
    except Exception as exc:
        need_in_ci(f"Redis is not reachable at {REDIS}: {exc}")
    yield client
    client.close()


@pytest.fixture
def stream_site(tmp_path: Path, state_dir: Path, client: Any) -> Iterator[Site]:
    site = start_site(tmp_path, client, policy=POLICY)
    try:
        yield site
    finally:
        site.service.close()


def _spec(site: Site, stream: str, table_db: Path) -> dict[str, Any]:
    return {
        "name": "svc-stream",
        "source": {"kind": "redis", "url": REDIS, "stream": stream},
        "fit": {
            "source": {"uri": str(site.lake), "features": ["a", "b", "c"]},
            "detector": {"name": "hbos"},
        },
        "key": ["id"],
        "threshold": {"kind": "fitted", "contamination": 0.05},
        "sinks": {"sql": {"url": f"sqlite:///{table_db}", "table": "scores"}},
        "dead_letter": {"stream": f"{stream}-dead"},
        "batch": {"max_events": 100, "max_wait_ms": 50},
    }


def _rows(db: Path) -> int:
    if not db.exists():
        return 0
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("scores"):
                return 0
            return int(conn.execute(sa.text("select count(*) from scores")).scalar_one())
    finally:
        engine.dispose()


def test_a_stream_runs_as_its_owners_job_until_cancelled(
    stream_site: Site, redis_client: Any, tmp_path: Path
) -> None:
    site = stream_site
    stream = f"adp-svc-{uuid.uuid4().hex[:10]}"
    db = site.out / "scores.db"
    site.out.mkdir(parents=True, exist_ok=True)
    try:
        rng = np.random.default_rng(3)
        frame = pd.DataFrame(rng.normal(size=(300, 3)), columns=["a", "b", "c"])
        frame.insert(0, "id", np.arange(300))
        pipe = redis_client.pipeline(transaction=False)
        for record in frame.to_dict(orient="records"):
            pipe.xadd(stream, {"data": json.dumps(record)})
        pipe.xadd(stream, {"data": b"not json"})
        pipe.execute()

        answer = site.submit({"stream": _spec(site, stream, db)})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        headers = site.headers("alice", "analyst")
        ended = {"succeeded", "failed", "cancelled", "interrupted"}
        try:
            wait_for(
                lambda: _rows(db) == 300 or site.job(job_id)["state"] in ended,
                timeout=120,
                every=0.5,
            )
        except AssertionError:
            logs = site.http.get(f"/jobs/{job_id}/logs", headers=headers).text
            raise AssertionError((site.job(job_id), logs, _rows(db))) from None
        running = site.job(job_id)
        logs = site.http.get(f"/jobs/{job_id}/logs", headers=headers).text
        assert _rows(db) == 300, (running, logs)
        assert running["state"] == "running" and running["progress"]["stage"] == "stream"

        cancel = site.http.post(f"/jobs/{job_id}/cancel", headers=site.headers("alice", "analyst"))
        assert cancel.status_code == 202, cancel.text
        final = site.wait(job_id)
        assert final["state"] == "cancelled", final
        assert final["summary"]["results"] == 300 and final["summary"]["dead_letters"] == 1
        assert final["summary"]["threshold_kind"] == "fitted"
        # the fitted threshold flags 5% of the data it was fitted on, as a batch job would;
        # the stream flags exactly the events scoring above it
        import adp

        source = dd.read_parquet(str(site.lake))[["a", "b", "c"]]
        detector = adp.create_detector("hbos", contamination=0.05).fit(source)
        trained = np.sort(detector.decision_function(source).compute().to_numpy())
        cut = trained[-math.ceil(0.05 * len(trained))]
        assert final["summary"]["threshold"] == pytest.approx(cut, rel=1e-12)
        events = detector.decision_function(dd.from_pandas(frame[["a", "b", "c"]], 2))
        scores = events.compute().to_numpy()
        assert (scores > cut).sum() <= final["summary"]["anomalies"] <= (scores >= cut).sum()
        assert redis_client.xlen(f"{stream}-dead") == 1
        pending = redis_client.xpending(stream, "adp")
        assert pending["pending"] == 0, "everything taken was acknowledged before stopping"

        records = [r for r in site.audit() if r.job_id == job_id]
        assert {r.identity for r in records} == {"alice"}
        stream_ids = {final["summary"]["stream_id"]}
        streamed = [r for r in site.audit() if r.job_id in stream_ids]
        assert {r.identity for r in streamed} == {"alice"}
        assert {"stream.run", "stream.model", "stream.stop"} <= {r.event_type for r in streamed}
    finally:
        redis_client.delete(stream, f"{stream}-dead")


def test_a_stream_the_policy_does_not_grant_is_refused_and_audited(stream_site: Site) -> None:
    site = stream_site
    stream = f"adp-svc-{uuid.uuid4().hex[:10]}"
    spec = _spec(site, stream, site.out / "x.db")
    answer = site.submit({"stream": spec}, "bob", "reader")
    assert answer.status_code == 403, answer.text
    assert f"stream:read:redis://127.0.0.1:6379/{stream}" in answer.json()["detail"]
    denials = [r for r in site.audit() if r.outcome == "denied" and r.identity == "bob"]
    assert len(denials) == 1
    # elsewhere than the granted streams
    spec["source"]["stream"] = "payments"
    assert site.submit({"stream": spec}).status_code == 403
    assert site.service.store.jobs() == []


def test_an_invalid_stream_spec_names_its_field(stream_site: Site) -> None:
    site = stream_site
    spec = _spec(site, "adp-svc-x", site.out / "x.db")
    spec["source"]["kind"] = "kafkaesque"
    answer = site.submit({"stream": spec})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("stream.source.kind")
    spec["source"]["kind"] = "redis"
    spec["fit"]["source"]["uri"] = "relative/lake"
    answer = site.submit({"stream": spec})
    assert answer.status_code == 422 and "relative path" in answer.json()["detail"]


def test_the_python_client_sends_a_stream_with_its_paths_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from adp.service.client import ServiceClient

    sent: dict[str, Any] = {}

    def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
        sent.update(method=method, path=path, **kwargs)
        return httpx.Response(202, json={"id": "abc"})

    client = ServiceClient("http://127.0.0.1:1", token="t")
    monkeypatch.setattr(client, "_call", call)
    monkeypatch.chdir(tmp_path)
    spec = {
        "source": {"kind": "redis", "url": REDIS, "stream": "adp-svc-x"},
        "fit": {"source": {"uri": "lake"}, "detector": {"name": "hbos"}},
        "sinks": {"sql": {"url": "sqlite:///scores.db", "table": "scores"}},
        "dead_letter": {"stream": "adp-svc-x-dead"},
    }
    assert client.submit_stream(spec) == "abc"
    assert (sent["method"], sent["path"]) == ("POST", "/jobs")
    body = sent["json"]["stream"]
    assert body["fit"]["source"]["uri"] == str(tmp_path / "lake")
    assert body["sinks"]["sql"]["url"] == f"sqlite:///{tmp_path / 'scores.db'}"
    client.close()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, ("stream:write", "redis://127.0.0.1:6379/in:adp-windows:adp")),
        (
            {"url": "redis://Cache.Example:6380/2", "key": "w"},
            ("stream:write", "redis://cache.example:6380/w"),
        ),
        ({"url": "postgresql://u:secret@db:5432/ops", "table": "wins"}, "data:write"),
    ],
)
def test_where_windows_persist_is_a_write_the_policy_must_grant(
    tmp_path: Path, state: dict[str, Any] | None, expected: Any
) -> None:
    from adp.service.stream_jobs import stream_checks, stream_spec

    lake = tmp_path / "lake"
    data = {
        "source": {"kind": "redis", "url": REDIS, "stream": "in"},
        "fit": {"source": {"uri": str(lake), "features": ["a"]}, "detector": {"name": "hbos"}},
        "key": ["id"],
        "sinks": {"stream": {"stream": "out"}},
        "dead_letter": {"stream": "dead"},
        "window": {"by": ["sensor"], "size": 5, "columns": ["a"]}
        | ({"state": state} if state else {}),
    }
    checks = stream_checks(stream_spec(data))
    if expected == "data:write":
        writes = [r for action, r in checks if action == "data:write"]
        assert writes and all("wins" in str(r) and "secret" not in str(r) for r in writes)
    else:
        assert expected in checks
    without = stream_checks(stream_spec({k: v for k, v in data.items() if k != "window"}))
    assert set(checks) - set(without)  # the window adds a check of its own

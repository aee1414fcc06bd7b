"""The analyst-feedback routes of the service, ``GET /review/next`` and ``POST /labels``, on
a real service whose job scored a time-keyed lake on the session's cluster: the rows each
strategy picks, their feature values and neighbourhood against the lake itself, labels
stored under the token's subject (never a name the request carries), and the policy's
``labels:write`` with every refusal audited."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pandas as pd
import pytest
from service_site import Site, start_site

#: Who may do what in these tests: analysts label models named sensors*, readers see every
#: job but label nothing.
REVIEW_POLICY = """
roles:
  analyst:
    allow: ["jobs:submit", "data:read:**", "data:write:**", "labels:write:sensors*"]
  reader:
    allow: ["jobs:read-all"]
  operator:
    allow: ["*"]
"""
FEATURES = ["a", "b", "c"]
SENSORS = 4
HOURS = 150


def write_sensor_lake(folder: Path, seed: int = 1) -> pd.DataFrame:
    """Hourly rows of ``SENSORS`` sensors, keyed by (sensor, ts), ~5% shifted, in two
    Parquet files split in time (a neighbourhood can straddle them)."""
    rng = np.random.default_rng(seed)
    times = pd.date_range("2026-03-01", periods=HOURS, freq="h")
    frame = pd.DataFrame(
        {
            "sensor": np.repeat([f"s{i}" for i in range(SENSORS)], HOURS),
            "ts": np.tile(times, SENSORS),
        }
    )
    X = rng.normal(size=(len(frame), len(FEATURES)))
    X[rng.random(len(frame)) < 0.05] += 4.0
    frame[FEATURES] = X
    folder.mkdir(parents=True, exist_ok=True)
    half = times[HOURS // 2]
    frame[frame.ts < half].to_parquet(folder / "part.0.parquet", index=False)
    frame[frame.ts >= half].to_parquet(folder / "part.1.parquet", index=False)
    return frame


def sensor_job(root: Path) -> dict[str, Any]:
    return {
        "name": "sensors-review",
        "source": {"uri": str(root / "sensors"), "features": FEATURES, "key": ["sensor", "ts"]},
        "detector": {"name": "hbos"},
        "threshold": {"contamination": 0.05},
        "explain": {"top_k": 2},
        "output": {"uri": str(root / "out" / "sensors")},
    }


@dataclass
class Reviewed:
    """A service, its succeeded job over the sensor lake, the lake and the job's output."""

    site: Site
    job: str
    lake: pd.DataFrame
    output: pd.DataFrame
    threshold: float

    def get(self, sub: str, *roles: str, **params: Any) -> Any:
        return self.site.http.get(
            "/review/next", params=params, headers=self.site.headers(sub, *roles)
        )

    def post(self, sub: str, *roles: str, **body: Any) -> Any:
        return self.site.http.post("/labels", json=body, headers=self.site.headers(sub, *roles))

    @property
    def store(self) -> Any:
        return self.site.http.app.state.review.store


def reviewed_site(root: Path, client: Any, driver: str = "thread") -> Reviewed:
    """Start a service with :data:`REVIEW_POLICY` and run the sensor job to success."""
    site = start_site(root, client, policy=REVIEW_POLICY, driver=driver)
    try:
        lake = write_sensor_lake(root / "sensors")
        answer = site.submit(sensor_job(root), "alice", "analyst")
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        status = site.wait(job_id)
        assert status["state"] == "succeeded", status
        output = pd.read_parquet(root / "out" / "sensors")
        return Reviewed(site, job_id, lake, output, float(status["summary"]["threshold"]))
    except BaseException:
        site.service.close()
        raise


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory: pytest.TempPathFactory, client: Any) -> Iterator[Reviewed]:
    root = tmp_path_factory.mktemp("review-api")
    with dask.config.set({"adp.state-dir": str(root / "state")}):
        found = reviewed_site(root, client)
        try:
            yield found
        finally:
            found.site.service.close()


def key_of(sensor: str, ts: pd.Timestamp) -> str:
    return f'{{"sensor":"{sensor}","ts":"{ts.isoformat()}"}}'


def test_next_gives_the_uncertain_rows_with_values_threshold_and_neighbourhood(
    reviewed: Reviewed,
) -> None:
    answer = reviewed.get(
        "alice", "analyst", model="sensors", job=reviewed.job, strategy="uncertain", n=3
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["job"] == reviewed.job and body["model"] == "sensors"
    assert body["key"] == ["sensor", "ts"] and body["time"] == "ts"
    assert body["threshold"] == pytest.approx(reviewed.threshold)
    assert body["features"] == FEATURES

    out = reviewed.output
    done = reviewed.store.reviewed_keys("sensors")
    keys = [key_of(s, t) for s, t in zip(out.sensor, out.ts, strict=True)]
    candidates = out[[k not in done for k in keys]]
    distance = (candidates.score - reviewed.threshold).abs()
    rows = body["rows"]
    assert len(rows) == 3 and not {r["row_key"] for r in rows} & done
    # the three smallest distances to the threshold (HBOS ties rows: compare distances)
    chosen = sorted(abs(r["score"] - reviewed.threshold) for r in rows)
    assert chosen == pytest.approx(sorted(distance.nsmallest(3)))
    assert set(keys) >= {r["row_key"] for r in rows}

    lake = reviewed.lake.set_index(["sensor", "ts"])
    for row in rows:
        sensor, ts = row["key"]["sensor"], pd.Timestamp(row["key"]["ts"])
        assert row["values"] == pytest.approx(lake.loc[(sensor, ts), FEATURES].to_dict())
        scored = out[(out.sensor == sensor) & (out.ts == ts)].iloc[0]
        assert row["score"] == pytest.approx(scored.score)
        assert row["is_anomaly"] == bool(scored.is_anomaly)
        # the neighbourhood: the same sensor's 3 rows before and after, in time order
        series = reviewed.lake[reviewed.lake.sensor == sensor].sort_values("ts")
        at = int(np.flatnonzero(series.ts.to_numpy() == ts.to_datetime64())[0])
        start, stop = max(0, at - 3), min(len(series), at + 4)
        near = row["neighbourhood"]
        assert [pd.Timestamp(n["ts"]) for n in near] == list(series.ts.iloc[start:stop])
        assert {n["sensor"] for n in near} == {sensor}
        assert [n["offset"] for n in near] == list(range(start - at, stop - at))
        centre = next(n for n in near if n["offset"] == 0)
        assert centre["row_key"] == row["row_key"] and centre["score"] == row["score"]
        for n in near:
            expected_values = lake.loc[(sensor, pd.Timestamp(n["ts"])), FEATURES].to_dict()
            assert n["values"] == pytest.approx(expected_values)


def test_top_rows_come_with_their_top_features_and_values(reviewed: Reviewed) -> None:
    answer = reviewed.get("alice", "analyst", model="sensors", job=reviewed.job, strategy="top")
    assert answer.status_code == 200, answer.text
    (row,) = answer.json()["rows"]
    assert row["is_anomaly"] is True and row["score"] > reviewed.threshold
    names = [f["name"] for f in row["top_features"]]
    assert len(names) == 2 and set(names) <= set(FEATURES)
    for feature in row["top_features"]:
        assert feature["value"] == pytest.approx(row["values"][feature["name"]])


def test_a_label_is_stored_under_the_tokens_subject_audited_and_not_offered_again(
    reviewed: Reviewed,
) -> None:
    first = reviewed.get("alice", "analyst", model="sensors", job=reviewed.job, strategy="top")
    key = first.json()["rows"][0]["row_key"]
    stored = reviewed.post(
        "alice",
        "analyst",
        model="sensors",
        row_key=key,
        label="anomaly",
        job=reviewed.job,
        note="spike",
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["who"] == "alice" and stored.json()["row_key"] == key
    latest = {lab.row_key: lab for lab in reviewed.store.labels("sensors")}
    assert (latest[key].label, latest[key].who, latest[key].note) == ("anomaly", "alice", "spike")
    records = [r for r in reviewed.site.audit() if r.event_type == "feedback.label"]
    assert any(r.identity == "alice" and json.loads(r.details)["row"] == key for r in records)

    again = reviewed.get("alice", "analyst", model="sensors", job=reviewed.job, strategy="top")
    assert again.json()["rows"][0]["row_key"] != key
    assert again.json()["labelled"]["anomaly"] >= 1

    # the analyst is the token's subject: a body naming someone else is refused
    forged = reviewed.post(
        "alice", "analyst", model="sensors", row_key=key, label="normal", who="mallory"
    )
    assert forged.status_code == 422
    assert all(lab.who != "mallory" for lab in reviewed.store.labels("sensors", history=True))


def test_label_requests_that_are_wrong_name_the_field(reviewed: Reviewed) -> None:
    key = key_of("s0", pd.Timestamp("2026-03-01T03:00:00"))
    bad_label = reviewed.post("alice", "analyst", model="sensors", row_key=key, label="maybe")
    assert bad_label.status_code == 422 and "label" in bad_label.json()["detail"]
    wrong_key = reviewed.post(
        "alice", "analyst", model="sensors", row_key='{"id": 3}', label="normal", job=reviewed.job
    )
    assert wrong_key.status_code == 422 and "sensor" in wrong_key.json()["detail"]
    strategy = reviewed.get("alice", "analyst", model="sensors", job=reviewed.job, strategy="best")
    assert strategy.status_code == 422 and "strategy" in strategy.json()["detail"]
    rows = reviewed.get("alice", "analyst", model="sensors", job=reviewed.job, n=0)
    assert rows.status_code == 422 and "n:" in rows.json()["detail"]
    name = reviewed.get("alice", "analyst", model="bad/name", job=reviewed.job)
    assert name.status_code == 422 and "model" in name.json()["detail"]
    unknown = reviewed.get("alice", "analyst", model="sensors", job="0123456789abcdef")
    assert unknown.status_code == 404
    no_job = reviewed.get("alice", "analyst", model="sensors")  # the job named no model
    assert no_job.status_code == 404 and "give job=ID" in no_job.json()["detail"]
    assert reviewed.site.http.get("/review/next", params={"model": "sensors"}).status_code == 401


def test_without_labels_write_the_routes_refuse_and_audit(reviewed: Reviewed) -> None:
    before = len(reviewed.store.labels("sensors", history=True))
    key = key_of("s1", pd.Timestamp("2026-03-01T04:00:00"))
    seen = reviewed.get("bob", "reader", model="sensors", job=reviewed.job)
    assert seen.status_code == 403 and "labels:write" in seen.json()["detail"]
    posted = reviewed.post("bob", "reader", model="sensors", row_key=key, label="normal")
    assert posted.status_code == 403
    other = reviewed.post("alice", "analyst", model="pumps", row_key=key, label="normal")
    assert other.status_code == 403, "labels:write covers sensors* only"
    # an analyst who may label but may not see alice's job
    carol = reviewed.get("carol", "analyst", model="sensors", job=reviewed.job)
    assert carol.status_code == 403 and "jobs:read-all" in carol.json()["detail"]
    assert len(reviewed.store.labels("sensors", history=True)) == before

    denials = [r for r in reviewed.site.audit() if r.outcome == "denied"]
    assert [(r.identity, r.action) for r in denials if r.action == "labels:write"] == [
        ("bob", "labels:write"),
        ("bob", "labels:write"),
        ("alice", "labels:write"),
    ]
    assert any(r.identity == "carol" and r.action == "jobs:read-all" for r in denials)
    metrics = reviewed.site.http.get("/metrics").text
    assert 'adp_service_denials_total{kind="policy"}' in metrics

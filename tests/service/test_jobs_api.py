"""The service's job API on a real cluster: submit and walk away, states, progress, logs,
reports, ownership, cancellation, resumption, the concurrency limit and restarts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from service_site import Site, job_spec, start_site, wait_for, write_lake

pytestmark = pytest.mark.slow


def digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))
    }


def test_submit_answers_at_once_and_the_job_runs_to_success(site: Site) -> None:
    answer = site.submit(job_spec(site.lake, site.out))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    assert answer.json()["state"] in ("queued", "running")

    final = site.wait(job_id)
    assert final["state"] == "succeeded", final
    assert final["owner"] == "alice"
    assert final["progress"]["done"] == final["progress"]["total"] > 0
    assert final["summary"]["rows"] == 2000
    assert final["summary"]["anomalies"] == 100  # 5% of 2000, a global threshold
    assert final["timings"]["seconds"] > 0
    scored = pd.read_parquet(site.out)
    assert len(scored) == 2000 and scored["is_anomaly"].sum() == 100

    headers = site.headers("alice", "analyst")
    logs = site.http.get(f"/jobs/{job_id}/logs", headers=headers).text
    assert "queued by alice" in logs and "score: 4 partitions" in logs and "succeeded" in logs
    report = site.http.get(f"/jobs/{job_id}/report", headers=headers)
    assert report.status_code == 200 and "ADP report: svc" in report.text

    records = [r for r in site.audit() if r.job_id == job_id]
    assert {r.identity for r in records} == {"alice"}, "every record of the job names its caller"
    assert ("job.run", "success") in {(r.event_type, r.outcome) for r in records}


def test_an_invalid_spec_is_refused_naming_the_field(site: Site) -> None:
    spec = job_spec(site.lake, site.out)
    spec["detector"] = {"name": "hbos", "params": {"n_bins": "many"}}
    spec["threshold"] = {"contamination": 2}
    answer = site.submit(spec)
    assert answer.status_code == 422
    assert "threshold.contamination" in answer.json()["detail"]
    assert site.service.store.jobs() == []


def test_relative_paths_are_refused_by_the_service(site: Site) -> None:
    spec = job_spec(Path("lake"), site.out)
    answer = site.submit(spec)
    assert answer.status_code == 422
    assert "source.uri" in answer.json()["detail"] and "absolute" in answer.json()["detail"]


def test_no_token_is_401_and_audited(site: Site) -> None:
    answer = site.http.get("/jobs")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    denials = [r for r in site.audit() if r.event_type == "auth.denied"]
    assert len(denials) == 1 and denials[0].outcome == "denied" and denials[0].reason


def test_the_policy_refuses_a_job_before_it_is_queued(site: Site) -> None:
    answer = site.submit(job_spec(site.lake, site.out), "mallory", "outsider")
    assert answer.status_code == 403
    assert "data:read" in answer.json()["detail"]
    assert site.service.store.jobs() == []
    denial = [r for r in site.audit() if r.outcome == "denied"]
    assert denial and denial[-1].identity == "mallory" and denial[-1].resource == str(site.lake)
    assert not site.out.exists()


def test_users_see_only_their_own_jobs_and_operators_see_all(site: Site) -> None:
    job_id = site.submit(job_spec(site.lake, site.out)).json()["id"]
    bob = site.headers("bob", "analyst")
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/logs", f"/jobs/{job_id}/report"):
        assert site.http.get(path, headers=bob).status_code == 403, path
    assert site.http.post(f"/jobs/{job_id}/cancel", headers=bob).status_code == 403
    assert site.http.get("/jobs", headers=bob).json()["jobs"] == []
    ops = site.headers("olga", "operator")
    assert [j["id"] for j in site.http.get("/jobs", headers=ops).json()["jobs"]] == [job_id]
    assert site.wait(job_id)["state"] == "succeeded"
    denied = [r for r in site.audit() if r.outcome == "denied" and r.identity == "bob"]
    assert len(denied) == 4


def test_an_unknown_job_is_404(site: Site) -> None:
    answer = site.http.get("/jobs/nope", headers=site.headers("alice", "analyst"))
    assert answer.status_code == 404


def test_cancel_stops_a_running_job_and_leaves_no_output(site: Site) -> None:
    big = write_lake(site.root / "lake" / "big", parts=8, rows=12_000, seed=3)
    spec = job_spec(big, site.out, detector={"name": "knn", "params": {"n_neighbors": 20}})
    job_id = site.submit(spec).json()["id"]
    wait_for(
        lambda: site.job(job_id)["state"] == "running" and site.job(job_id)["progress"]["total"]
    )
    answer = site.http.post(f"/jobs/{job_id}/cancel", headers=site.headers("alice", "analyst"))
    assert answer.status_code == 202
    final = site.wait(job_id)
    assert final["state"] == "cancelled", final
    assert "cancelled by alice" in final["error"]
    assert not site.out.exists()
    kept = list(site.root.glob(".out.adp-staging-*"))
    assert len(kept) == 1 and (kept[0] / "_adp_resumable").exists(), "kept for resume"
    outcomes = [(r.event_type, r.outcome) for r in site.audit() if r.job_id == job_id]
    assert ("job.run", "cancelled") in outcomes
    again = site.http.post(f"/jobs/{job_id}/cancel", headers=site.headers("alice", "analyst"))
    assert again.status_code == 409

    resumed = site.http.post(f"/jobs/{job_id}/resume", headers=site.headers("alice", "analyst"))
    assert resumed.status_code == 202 and resumed.json()["attempt"] == 2
    assert site.wait(job_id, timeout=240)["state"] == "succeeded"
    assert len(pd.read_parquet(site.out)) == 96_000
    assert not list(site.root.glob(".out.adp-staging-*")), "a committed job leaves no staging"


def test_the_concurrency_limit_queues_the_rest(
    tmp_path: Path, state_dir: Path, client: Any
) -> None:
    site = start_site(tmp_path, client, max_running=1)
    try:
        ids = [
            site.submit(job_spec(site.lake, site.root / "out" / f"o{i}", name=f"j{i}")).json()["id"]
            for i in range(3)
        ]
        seen_running = set()

        ops = site.headers("olga", "operator")

        def all_done() -> bool:  # one snapshot of every state (one query), not three reads
            listed = {j["id"]: j for j in site.http.get("/jobs", headers=ops).json()["jobs"]}
            states = [listed[i]["state"] for i in ids]
            running = states.count("running")
            assert running <= 1, states
            seen_running.update(i for i, s in zip(ids, states, strict=True) if s == "running")
            return all(s == "succeeded" for s in states)

        wait_for(all_done, timeout=120, every=0.05)
        # in submission order
        started = [site.job(i)["timings"]["started"] for i in ids]
        assert started == sorted(started)
    finally:
        site.service.close()


def test_a_restarted_service_marks_running_jobs_interrupted(
    tmp_path: Path, state_dir: Path, client: Any
) -> None:
    from adp.config import settings
    from adp.service.server import RESTART_REASON, Service
    from adp.service.store import JobStore

    store = JobStore(f"sqlite:///{state_dir / 'service.db'}", state_dir=state_dir)
    record = store.create(
        name="x", owner="alice", roles=["analyst"], spec={}, spec_shown={}, output=None
    )
    assert store.claim() is not None and store.get(record.id).state == "running"
    store.close()
    service = Service.start(settings().service, client=client, run_jobs=False)
    try:
        assert service.interrupted == [record.id]
        assert service.store.get(record.id).state == "interrupted"
        assert service.store.get(record.id).error == RESTART_REASON
        closing = [r for r in service.audit_log.records() if r.job_id == record.id]
        assert [(r.outcome, r.identity) for r in closing] == [("interrupted", "alice")]
    finally:
        service.close()


QUALITY_POLICY = """
roles:
  analyst:
    allow: ["jobs:submit", "data:read:{lake}/**", "data:write:{out}/**"]
  operator:
    allow: ["*"]
quality:
  min_score: 0.95
"""


def test_the_quality_gate_refuses_poor_data_unless_overridden(
    tmp_path: Path, state_dir: Path, client: Any
) -> None:
    site = start_site(tmp_path, client, policy=QUALITY_POLICY)
    try:
        clean = site.wait(site.submit(job_spec(site.lake, site.out / "clean")).json()["id"])
        assert clean["state"] == "succeeded", clean  # clean data passes the gate

        holey = site.lake / "holey"
        holey.mkdir()
        frame = pd.read_parquet(site.lake / "part.0.parquet")
        frame.loc[frame.index[:200], "a"] = float("nan")  # 200 of 1500 cells: 13% missing
        frame.to_parquet(holey / "part.0.parquet", index=False)
        spec = job_spec(holey, site.out / "holey", name="holey")
        spec["source"]["missing"] = "impute_median"

        refused = site.wait(site.submit(spec).json()["id"])
        assert refused["state"] == "failed"
        assert "quality score" in refused["error"] and "below the minimum 0.95" in refused["error"]
        assert not (site.out / "holey").exists()
        denial = [r for r in site.audit() if r.job_id == refused["id"] and r.outcome == "denied"]
        # the policy's decision, then the run's own outcome
        assert [d.action for d in denial] == ["quality:override", "run"]

        spec["output"]["uri"] = str(site.out / "ops")
        allowed = site.submit(spec, "olga", "operator")
        final = site.wait(allowed.json()["id"])
        assert final["state"] == "succeeded", final
        logs = site.http.get(
            f"/jobs/{final['id']}/logs", headers=site.headers("olga", "operator")
        ).text
        assert "overridden by operator" in logs
        override = [
            r for r in site.audit() if r.job_id == final["id"] and r.action == "quality:override"
        ]
        assert [r.outcome for r in override] == ["success"]
    finally:
        site.service.close()

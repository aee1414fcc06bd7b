"""Chaos on the client: SIGTERM, SIGHUP and SIGKILL to ``adp run`` at random points.

Each run starts ``adp run`` against a scheduler preloaded with ADP's plugins, sends the
signal after a random delay (up to the wall time of an undisturbed run), then makes the
next start (``adp clean``) and checks: no staging folder and no staging owner left, every
job the audit trail shows started has a final outcome (``success``, ``failure`` or
``interrupted``, the latter naming the signal or the vanished owner), a failed job counted
once in ``adp_jobs_failed_total`` (SIGTERM and SIGHUP; a SIGKILLed client cannot count, its
job is closed as ``interrupted`` at the next start), and the output either absent or whole.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from adp.bench.chaos_env import (
    PreloadedCluster,
    adp_env,
    debris,
    job_spec,
    jobs_failed,
    make_lake,
    output_fingerprint,
    preloaded_cluster,
)
from adp.bench.measure import timed

__all__ = ["client_signals"]

ADP = [sys.executable, "-m", "adp.cli"]
SIGNALS = ("SIGTERM", "SIGHUP", "SIGKILL")


def _write_job(path: Path, lake: Path, output: Path) -> Path:
    path.write_text(yaml.safe_dump(job_spec(str(lake), str(output))))
    return path


def _job_of(state: Path, pid: int) -> dict[str, Any]:
    """The audit trail's view of the job ``adp run`` process ``pid`` started (empty when it
    started none): its final outcome and reason, and whether the chain verifies."""
    from adp.observe.audit import AuditLog

    with AuditLog(state_dir=state) as log:
        records = list(log.records())
        started = [
            r
            for r in records
            if r.event_type == "job.run"
            and r.outcome == "started"
            and (r.details_data().get("owner") or {}).get("pid") == pid
        ]
        unfinished = len(log.unfinished("job.run"))
        verified = bool(log.verify().ok)
    ran = {r.job_id for r in records if r.event_type == "job.run"}
    submitted = [
        r
        for r in records
        if r.event_type == "job.submit"
        and (r.details_data().get("owner") or {}).get("pid") == pid
        and r.job_id not in ran
    ]
    if not started:
        # a job submitted but stopped before it ran has no outcome of its own
        return {
            "started": False,
            "submitted_without_outcome": len(submitted),
            "unfinished": unfinished,
            "verified": verified,
        }
    job_id = started[-1].job_id
    final = [
        r
        for r in records
        if r.job_id == job_id and r.event_type == "job.run" and r.seq > started[-1].seq
    ]
    last = final[-1] if final else None
    return {
        "started": True,
        "outcome": last.outcome if last else None,
        "reason": last.reason if last else None,
        "unfinished": unfinished,
        "verified": verified,
    }


def _wait_count(cluster: PreloadedCluster, expected: float, wait: float = 10.0) -> float:
    deadline = time.monotonic() + wait
    value = jobs_failed(cluster.metrics_url)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        value = jobs_failed(cluster.metrics_url)
    return value


def _one(
    cluster: PreloadedCluster,
    name: str,
    job: Path,
    parent: Path,
    state: Path,
    delay: float,
) -> dict[str, Any]:
    signum = signal.Signals[name]
    failed_before = jobs_failed(cluster.metrics_url)
    proc = subprocess.Popen(
        [*ADP, "run", str(job), "--no-progress", "--scheduler", cluster.address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cluster.env,
    )
    time.sleep(delay)
    proc.send_signal(signum)
    with timed() as exiting:
        _, stderr = proc.communicate(timeout=120)
    with timed() as cleaning:
        clean = subprocess.run(
            [*ADP, "clean"], env=cluster.env, capture_output=True, text=True, timeout=120
        )
    job_view = _job_of(state, proc.pid)
    outcome = job_view.get("outcome")
    interrupted = outcome == "interrupted"
    expected_count = failed_before + (1 if interrupted and name != "SIGKILL" else 0)
    failed_after = _wait_count(cluster, expected_count)
    got = output_fingerprint(parent / "scores")
    whole = bool(got.parts) and not got.strays
    absent = not (parent / "scores").exists()
    lines = [line for line in stderr.splitlines() if line.strip()]
    truthful = (not job_view["started"]) or outcome in ("success", "failure", "interrupted")
    if interrupted and name == "SIGKILL":
        truthful = truthful and bool(job_view.get("reason"))
    elif interrupted:
        truthful = truthful and name in (job_view.get("reason") or "")
    record = {
        "signal": name,
        "delay_seconds": round(delay, 3),
        "exit_code": proc.returncode,
        "exit_seconds": exiting.seconds,
        "clean_seconds": cleaning.seconds,
        "clean_exit_code": clean.returncode,
        "job_started": job_view["started"],
        "outcome": outcome,
        "reason": job_view.get("reason"),
        "unfinished_jobs": job_view["unfinished"],
        "submitted_without_outcome": job_view.get("submitted_without_outcome", 0),
        "audit_verifies": job_view["verified"],
        "failed_counted": failed_after - failed_before,
        "debris": debris(parent, state),
        "output": "whole" if whole else "absent" if absent else "partial",
        "stderr_lines": len(lines) if name != "SIGKILL" else 0,
    }
    counted_ok = record["failed_counted"] == (1 if interrupted and name != "SIGKILL" else 0)
    one_line = name == "SIGKILL" or not interrupted or len(lines) == 1
    record["passed"] = bool(
        not record["debris"]
        and record["unfinished_jobs"] == 0
        and record["submitted_without_outcome"] == 0
        and record["audit_verifies"]
        and truthful
        and counted_ok
        and one_line
        and record["output"] != "partial"
        and (outcome != "success" or whole)
        and clean.returncode == 0
    )
    return record


def client_signals(
    root: Path,
    *,
    runs: int = 10,
    signals: tuple[str, ...] = SIGNALS,
    partitions: int = 32,
    rows: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """``runs`` runs per signal in ``signals``, each at a random point of the job.

    Returns
    -------
    dict
        ``runs`` (one record per run), per-signal counts of runs that passed and of the
        outcomes, ``baseline_seconds`` (an undisturbed ``adp run``) and ``passed``.
    """
    state = root / "state"
    env = adp_env(state)
    lake = make_lake(root / "lake", partitions, rows, seed=seed)
    rng = random.Random(seed)
    records = []
    with preloaded_cluster(root, env) as cluster:
        base = _write_job(root / "base.yaml", lake, root / "base" / "scores")
        walls = []
        for _ in range(2):  # the second run is warm: its wall time bounds the random points
            with timed() as baseline:
                done = subprocess.run(
                    [*ADP, "run", str(base), "--no-progress", "--scheduler", cluster.address],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
            if done.returncode != 0:
                raise RuntimeError(f"the undisturbed job failed: {done.stderr.strip()[-500:]}")
            walls.append(baseline.seconds)
        for name in signals:
            for i in range(runs):
                parent = root / f"{name.lower()}-{i}"
                parent.mkdir()
                job = _write_job(parent / "job.yaml", lake, parent / "scores")
                delay = rng.uniform(0.0, min(walls))
                records.append(_one(cluster, name, job, parent, state, delay))
    summary: dict[str, Any] = {}
    for name in signals:
        mine = [r for r in records if r["signal"] == name]
        outcomes: dict[str, int] = {}
        for r in mine:
            key = r["outcome"] or "not started"
            outcomes[key] = outcomes.get(key, 0) + 1
        summary[name] = {
            "runs": len(mine),
            "passed": sum(r["passed"] for r in mine),
            "outcomes": outcomes,
            "max_exit_seconds": max(r["exit_seconds"] for r in mine),
        }
    return {
        "scenario": "client_signals",
        "partitions": partitions,
        "rows": partitions * rows,
        "baseline_seconds": min(walls),
        "by_signal": summary,
        "runs": records,
        "passed": all(r["passed"] for r in records),
    }

"""Closing orphaned jobs is exactly-once: however many threads or processes close them at
the same time, each job whose owner is gone gets one ``interrupted`` outcome."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from adp.errors import ConfigError
from adp.observe.audit import AuditLog, OutcomeExists, close_orphaned_jobs
from adp.observe.orphans import ORPHAN_REASON, Owner, process_owner

REPO = Path(__file__).resolve().parents[2]
JOBS = ["j1", "j2", "j3"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _orphans(url: str, state: Path) -> None:
    """Three jobs ``started`` by a process of this host that is gone, and one finished."""
    me = process_owner()
    dead = Owner(me.host, _dead_pid(), me.started)
    with AuditLog(url, state_dir=state) as log:
        for job_id in [*JOBS, "done"]:
            log.append(
                "job.run",
                action="run",
                resource="/lake",
                outcome="started",
                job_id=job_id,
                details={"owner": dead.to_dict()},
            )
        log.append("job.run", action="run", outcome="success", job_id="done")


def _closings(url: str, state: Path) -> dict[str, int]:
    with AuditLog(url, state_dir=state) as log:
        assert log.verify().ok
        closing = [r for r in log.records() if r.outcome == "interrupted"]
    assert all(r.reason == ORPHAN_REASON for r in closing)
    return {job: sum(r.job_id == job for r in closing) for job in [*JOBS, "done"]}


def test_append_once_appends_a_jobs_outcome_only_while_it_has_none(tmp_path: Path) -> None:
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", state_dir=tmp_path) as log:
        log.append("job.run", action="run", outcome="started", job_id="j")
        first = log.append("job.run", action="run", outcome="failure", job_id="j", once=True)
        with pytest.raises(OutcomeExists):
            log.append("job.run", action="run", outcome="interrupted", job_id="j", once=True)
        log.append("job.run", action="run", outcome="failure", job_id="j")  # without once
        with pytest.raises(ConfigError, match="once=True"):
            log.append("job.run", action="run", outcome="started", job_id="k", once=True)
        with pytest.raises(ConfigError, match="once=True"):
            log.append("job.run", action="run", outcome="failure", once=True)
        assert [r.outcome for r in log.records(job_id="j")] == ["started", "failure", "failure"]
        assert log.records(job_id="j")[1].seq == first.seq and log.failures == 0
        assert log.verify().ok


class _RacingLog(AuditLog):
    """An audit log whose readers of unfinished jobs all wait for one another, so that
    every closer reads the same orphans before any of them appends."""

    barrier: threading.Barrier

    def unfinished(self, event_type: str):  # type: ignore[no-untyped-def]
        found = super().unfinished(event_type)
        self.barrier.wait(timeout=30)
        return found


def test_threads_closing_orphans_at_once_close_each_job_once(tmp_path: Path) -> None:
    url, state = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "state"
    _orphans(url, state)
    logs = [_RacingLog(url, state_dir=state) for _ in range(4)]
    _RacingLog.barrier = threading.Barrier(len(logs))
    closed: list[int] = []
    errors: list[BaseException] = []

    def close(log: AuditLog) -> None:
        try:
            closed.append(close_orphaned_jobs(log, source="cli"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=close, args=(log,)) for log in logs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for log in logs:
        log.close()
    assert errors == []
    assert sum(closed) == len(JOBS)
    assert _closings(url, state) == {"j1": 1, "j2": 1, "j3": 1, "done": 0}


def test_threads_closing_orphans_on_postgresql_close_each_job_once(
    pg_table: str, tmp_path: Path
) -> None:
    from observe_helpers import PG_URL

    state = tmp_path / "state"
    me = process_owner()
    dead = Owner(me.host, _dead_pid(), me.started)
    logs = [_RacingLog(PG_URL, table=pg_table, state_dir=state) for _ in range(3)]
    for job_id in JOBS:
        logs[0].append(
            "job.run",
            action="run",
            outcome="started",
            job_id=job_id,
            details={"owner": dead.to_dict()},
        )
    _RacingLog.barrier = threading.Barrier(len(logs))
    closed: list[int] = []
    threads = [
        threading.Thread(target=lambda log=log: closed.append(close_orphaned_jobs(log)))
        for log in logs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    records = logs[0].records()
    for log in logs:
        log.close()
    assert sum(closed) == len(JOBS)
    closing = [r.job_id for r in records if r.outcome == "interrupted"]
    assert sorted(closing) == JOBS


# Closes orphans in the audit log argv[1] with state dir argv[2], once every one of
# argv[4] racers (marked by files in argv[3]) has read the unfinished jobs; prints how
# many it closed.
_RACER = r"""
import os, sys, time
from pathlib import Path
from adp.observe.audit import AuditLog, close_orphaned_jobs

url, state, marks, racers = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])

class Racing(AuditLog):
    def unfinished(self, event_type):
        found = super().unfinished(event_type)
        (marks / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < racers and time.monotonic() < deadline:
            time.sleep(0.01)
        return found

with Racing(url, state_dir=state) as log:
    print(close_orphaned_jobs(log, source="cli"), flush=True)
"""


@pytest.mark.slow
def test_processes_closing_orphans_at_once_close_each_job_once(tmp_path: Path) -> None:
    url, state = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "state"
    _orphans(url, state)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, url, str(state), str(marks), "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    for racer, (out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
    assert len(list(marks.iterdir())) == 2  # both read the orphans before either closed one
    assert sum(int(out) for out, _ in outputs) == len(JOBS), outputs
    assert _closings(url, state) == {"j1": 1, "j2": 1, "j3": 1, "done": 0}

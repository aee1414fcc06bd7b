"""Interrupts: SIGTERM, SIGHUP and SIGINT stop `adp run` cleanly (work cancelled, staging
removed, the output untouched, the audit trail closed as `interrupted`, the failure counted,
one line on stderr); a SIGKILLed client's job is closed in the audit trail afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from adp.jobs.interrupts import InterruptGuard, JobInterrupted
from adp.observe.audit import AuditLog, close_orphaned_jobs
from adp.observe.orphans import ORPHAN_REASON, Owner, owner_gone, process_owner

ADP = [sys.executable, "-m", "adp.cli"]
DASK = str(Path(sys.executable).with_name("dask"))


# --- the guard, in this process ----------------------------------------------------------


def test_guard_turns_sigterm_into_job_interrupted_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(JobInterrupted) as caught, InterruptGuard() as guard:
        assert guard.active
        signal.raise_signal(signal.SIGTERM)
    assert isinstance(caught.value, KeyboardInterrupt)  # not swallowed by `except Exception`
    assert caught.value.signal_name == "SIGTERM"
    assert caught.value.exit_code == 128 + signal.SIGTERM
    assert str(caught.value) == "interrupted by SIGTERM; the output is unchanged"
    assert signal.getsignal(signal.SIGTERM) is before


def test_guard_defers_a_signal_until_the_commit_ends_and_ignores_later_ones() -> None:
    steps: list[str] = []
    with pytest.raises(JobInterrupted) as caught, InterruptGuard() as guard:
        with guard.deferred():
            signal.raise_signal(signal.SIGHUP)
            steps.append("commit finished")
            signal.raise_signal(signal.SIGTERM)  # a second signal: ignored
        steps.append("not reached")
    assert steps == ["commit finished"]
    assert caught.value.signal_name == "SIGHUP" and caught.value.committed
    assert "already committed" in str(caught.value)


def test_guard_does_nothing_outside_the_main_thread() -> None:
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(InterruptGuard().__enter__().active))
    thread.start()
    thread.join()
    assert seen == [False]


# --- orphaned jobs, without a cluster ----------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _started(log: AuditLog, job_id: str, owner: Owner) -> None:
    log.append(
        "job.run",
        action="run",
        resource="/lake",
        outcome="started",
        job_id=job_id,
        details={"name": job_id, "owner": owner.to_dict()},
    )


def test_close_orphaned_jobs_closes_only_jobs_whose_owner_is_gone(tmp_path: Path) -> None:
    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", state_dir=tmp_path)
    me = process_owner()
    dead = Owner(me.host, _dead_pid(), me.started)
    reused = Owner(me.host, me.pid, (me.started or 0) - 3600)  # our pid, another start
    elsewhere = Owner("another-host", _dead_pid(), 1.0)
    for job_id, owner in [("dead", dead), ("reused", reused), ("alive", me), ("far", elsewhere)]:
        _started(log, job_id, owner)
    _started(log, "finished", dead)
    log.append("job.run", action="run", outcome="success", job_id="finished")
    assert owner_gone(dead) and owner_gone(reused)
    assert not owner_gone(me) and not owner_gone(elsewhere)

    assert close_orphaned_jobs(log, source="cli") == 2
    assert close_orphaned_jobs(log) == 0  # closed once
    closing = [r for r in log.records() if r.outcome == "interrupted"]
    assert sorted(r.job_id or "" for r in closing) == ["dead", "reused"]
    for record in closing:
        assert record.reason == ORPHAN_REASON and record.source == "cli"
        assert record.details_data()["owner"]["pid"] in (dead.pid, reused.pid)
    assert {r.job_id for r in log.unfinished("job.run")} == {"alive", "far"}
    assert log.verify().ok


# --- `adp run` in a subprocess, against a preloaded scheduler ----------------------------


@dataclass
class Cluster:
    address: str
    metrics_url: str
    root: Path
    env: dict[str, str]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`dask scheduler --preload adp.observe.plugins` and two worker processes."""
    root = tmp_path_factory.mktemp("interrupts")
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(root / "state")}
    env.pop("DASK_ADP__AUDIT__URL", None)
    port = _free_port()
    scheduler_file = root / "scheduler.json"
    log = (root / "cluster.log").open("wb")
    common = ["--scheduler-file", str(scheduler_file)]
    procs = [
        subprocess.Popen(
            [DASK, "scheduler", "--preload", "adp.observe.plugins", "--host", "127.0.0.1"]
            + ["--port", "0", "--dashboard-address", f"127.0.0.1:{port}", *common],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
        subprocess.Popen(
            [DASK, "worker", "--nworkers", "2", "--nthreads", "1", "--no-dashboard", *common]
            + ["--local-directory", str(root / "workers")],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        ),
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (root / "cluster.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield Cluster(address, f"http://127.0.0.1:{port}/metrics", root, env)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake whose scoring (KNN, 100 neighbours of 5,000 fitted rows) takes a few seconds
    on 2 workers, after a quick fit."""
    folder = tmp_path_factory.mktemp("slow-lake")
    rng = np.random.default_rng(0)
    files, rows = 32, 5000
    for i in range(files):
        part = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
        part["row"] = np.arange(rows) + rows * i
        part.to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _job(tmp_path: Path, lake: Path, out: Path) -> Path:
    job = tmp_path / "job.yaml"
    spec = {
        "name": "interrupted",
        "source": {"uri": str(lake), "key": ["row"]},
        "detector": {"name": "knn", "params": {"n_neighbors": 100}},
        "fit": {"sample_rows": 5000},
        "threshold": {"contamination": 0.05},
        "output": {"uri": str(out)},
        "cluster": {"n_workers": 2, "threads_per_worker": 1},
        "profile": False,
    }
    job.write_text(yaml.safe_dump(spec))
    return job


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with its SHA-256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _wait_for_scoring(roots: list[Path], proc: subprocess.Popen[str]) -> None:
    """Until the first scored partition is staged (anywhere under ``roots``)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any("staging" in str(p) for root in roots for p in root.rglob("part.*") if p.is_file()):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    pytest.fail("the job never started scoring")


def _jobs_failed(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "adp_jobs_failed":
            return sum(s.value for s in family.samples if s.name == "adp_jobs_failed_total")
    return 0.0


def _interrupt(
    job: Path, signum: int, roots: list[Path], *args: str, env: dict[str, str], group: bool = False
):
    """Run `adp run JOB`, send ``signum`` while it scores (to its whole process group, as
    a terminal's Ctrl-C does, with ``group``); return the process, its stderr and the
    seconds it took to exit after the signal."""
    proc = subprocess.Popen(
        [*ADP, "run", str(job), "--no-progress", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=group,
    )
    _wait_for_scoring(roots, proc)
    sent = time.monotonic()
    if group:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=90)
    return proc, stderr, time.monotonic() - sent


def _check_interrupted(
    proc: subprocess.Popen[str], stderr: str, signum: int, state: Path
) -> dict[str, object]:
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines() == [f"error: interrupted by {name}; the output is unchanged"]
    log = AuditLog(state_dir=state)
    try:
        runs = [r for r in log.records() if r.event_type == "job.run"]
        assert runs[-1].outcome == "interrupted", runs[-1]
        assert runs[-1].reason and name in runs[-1].reason
        details = runs[-1].details_data()
        started = next(r for r in runs if r.seq == details["started_seq"])
        assert started.outcome == "started" and started.job_id == runs[-1].job_id
        assert started.details_data()["owner"]["pid"] == proc.pid
        assert log.verify().ok
    finally:
        log.close()
    return details


@pytest.mark.slow
# SIGHUP takes SIGTERM's path; both, and SIGKILL, also hit `adp run --scheduler` at random
# points in tests/bench/test_chaos.py
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_adp_run_cleanly(
    cluster: Cluster, lake: Path, tmp_path: Path, signum: int
) -> None:
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    (outdir / "neighbour.txt").write_text("not ADP's")
    before = _tree(outdir)
    job = _job(tmp_path, lake, outdir / "scores")
    failed = _jobs_failed(cluster.metrics_url)

    proc, stderr, took = _interrupt(
        job, signum, [outdir], "--scheduler", cluster.address, env=cluster.env
    )

    details = _check_interrupted(proc, stderr, signum, cluster.root / "state")
    assert details["signal"] == signal.Signals(signum).name
    assert _tree(outdir) == before  # no output, no staging left, the neighbour untouched
    assert took < 30
    deadline = time.monotonic() + 10
    while _jobs_failed(cluster.metrics_url) != failed + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _jobs_failed(cluster.metrics_url) == failed + 1


@pytest.mark.slow
def test_ctrl_c_on_a_local_cluster_prints_one_line(lake: Path, tmp_path: Path) -> None:
    """Ctrl-C in a terminal (SIGINT to the process group) with the job's own LocalCluster:
    no "Task exception was never retrieved ... AllExit", no worker's KeyboardInterrupt."""
    state = tmp_path / "state"
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state)}
    env.pop("DASK_ADP__AUDIT__URL", None)
    outdir = tmp_path / "outdir"
    job = _job(tmp_path, lake, outdir / "scores")
    outdir.mkdir()

    proc, stderr, took = _interrupt(job, signal.SIGINT, [outdir], env=env, group=True)

    assert "AllExit" not in stderr and "Traceback" not in stderr
    _check_interrupted(proc, stderr, signal.SIGINT, state)
    assert list(outdir.iterdir()) == []
    assert took < 30


@pytest.mark.slow
def test_a_sigkilled_client_is_closed_in_the_audit_trail(
    cluster: Cluster, lake: Path, tmp_path: Path
) -> None:
    """SIGKILL leaves the job `started`; the next `adp run` closes it as `interrupted`."""
    state = cluster.root / "state"
    outdir = tmp_path / "outdir"
    job = _job(tmp_path, lake, outdir / "scores")
    outdir.mkdir()
    killed, _, _ = _interrupt(
        job, signal.SIGKILL, [outdir], "--scheduler", cluster.address, env=cluster.env
    )
    assert killed.returncode == -signal.SIGKILL
    with AuditLog(state_dir=state) as log:
        (orphan,) = [
            r for r in log.unfinished("job.run") if r.details_data()["owner"]["pid"] == killed.pid
        ]

    # the next job (here one that is refused at once: its output exists) closes it
    other = tmp_path / "other.yaml"
    spec = yaml.safe_load(job.read_text())
    spec["output"] = {"uri": str(lake), "mode": "error"}
    other.write_text(yaml.safe_dump(spec))
    subprocess.run(
        [*ADP, "run", str(other), "--scheduler", cluster.address],
        env=cluster.env,
        capture_output=True,
        timeout=120,
    )

    with AuditLog(state_dir=state) as log:
        closing = [r for r in log.records(job_id=orphan.job_id) if r.outcome == "interrupted"]
        assert [r.reason for r in closing] == [ORPHAN_REASON]
        assert closing[0].details_data()["started_seq"] == orphan.seq
        assert close_orphaned_jobs(log) == 0
        assert log.verify().ok


def test_a_signal_while_the_cluster_starts_still_closes_the_job(
    lake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adp.jobs import runner
    from adp.jobs.spec import JobSpec

    def starting(*args, **kwargs):
        raise JobInterrupted(signal.SIGTERM)

    monkeypatch.setattr(runner, "_client_for", starting)
    spec = yaml.safe_load(_job(tmp_path, lake, tmp_path / "out").read_text())
    with AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", state_dir=tmp_path / "state") as log:
        with pytest.raises(JobInterrupted):
            runner.run_job(JobSpec.from_dict(spec), audit_log=log, show_progress=False)
        records = log.records()
    submitted = [r for r in records if r.event_type == "job.submit"]
    closed = [r for r in records if r.event_type == "job.run"]
    assert len(submitted) == 1 and len(closed) == 1
    assert closed[0].job_id == submitted[0].job_id
    assert closed[0].outcome == "interrupted" and "SIGTERM" in (closed[0].reason or "")
    assert not (tmp_path / "out").exists()

"""`adp serve` as a team runs it: a real service process with its own LocalCluster, driven
by `adp token`, `adp submit` and `adp jobs`; killed with SIGKILL mid-job, restarted, and
the job resumed to output byte-identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from service_site import job_spec, wait_for, write_lake

pytestmark = pytest.mark.slow
ADP = [sys.executable, "-m", "adp.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """One `adp serve` process group (the service and its cluster's processes)."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Served:
        self.proc = subprocess.Popen(
            [*ADP, "serve", "--port", str(self.port), "--max-running", "2"],
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._healthy, timeout=90, every=0.3)
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)  # the whole group: a pod or a machine dying
        self.proc.wait(60)

    def adp(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*ADP, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if check:
            assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    env = {
        **os.environ,
        "DASK_ADP__STATE_DIR": str(tmp_path / "state"),
        "DASK_ADP__CLUSTER__N_WORKERS": "2",
    }
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    server = Served(env, _free_port(), tmp_path / "serve.log")
    server.env["DASK_ADP__SERVICE__URL"] = server.url
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))
    }


def _status(served: Served, job_id: str) -> dict[str, Any]:
    """The job's status over HTTP (polled often; `adp jobs status` is tested once)."""
    token = served.env["DASK_ADP__SERVICE__TOKEN"]
    answer = httpx.get(
        f"{served.url}/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_kill_9_mid_job_then_restart_and_resume_gives_identical_output(
    served: Served, tmp_path: Path
) -> None:
    # k-NN: deterministic for a fixed fit sample, and slow enough per partition (about half
    # second) for the kill to land mid-scoring; progress is written at most every 0.5 s
    lake = write_lake(tmp_path / "lake", parts=12, rows=8_000, seed=11)
    detector = {"name": "knn"}
    specs = {}
    for name in ("resumed", "straight"):
        spec = job_spec(lake, tmp_path / name, name=name, detector=detector)
        spec["fit"] = {"random_state": 0}
        specs[name] = tmp_path / f"{name}.yaml"
        specs[name].write_text(yaml.safe_dump(spec))

    served.start()
    token = served.adp("token", "issue", "--sub", "alice", "--role", "analyst").stdout.strip()
    served.env["DASK_ADP__SERVICE__TOKEN"] = token

    t0 = time.monotonic()
    job_id = served.adp("submit", str(specs["resumed"])).stdout.strip()
    assert time.monotonic() - t0 < 15, "submit returns at once"
    assert len(job_id) == 32

    def scoring_half_done() -> bool:
        status = _status(served, job_id)
        assert status["state"] in ("queued", "running"), status
        p = status["progress"]
        return bool(p["stage"] == "score" and 2 <= p["done"] < p["total"])

    wait_for(scoring_half_done, timeout=180, every=0.05)
    served.kill(signal.SIGKILL)

    served.start()
    assert f"job {job_id} was running when the service stopped" in served.log.read_text()
    status = json.loads(served.adp("jobs", "status", job_id).stdout)
    assert status["state"] == "interrupted", status
    listed = served.adp("jobs", "list", "--json").stdout.splitlines()
    assert [json.loads(line)["id"] for line in listed] == [job_id]

    assert served.adp("jobs", "resume", job_id).stdout.strip() == "queued"
    waited = served.adp("jobs", "wait", job_id, "--timeout", "240", check=False)
    assert waited.returncode == 0, (
        waited.stdout,
        waited.stderr,
        served.adp("jobs", "logs", job_id).stdout,
    )
    final = _status(served, job_id)
    assert final["state"] == "succeeded" and final["attempt"] == 2
    assert final["summary"]["reused_partitions"] >= 2
    logs = served.adp("jobs", "logs", job_id).stdout
    assert "interrupted" in logs and "partitions' scores reused" in logs

    straight = served.adp("submit", str(specs["straight"])).stdout.strip()
    assert served.adp("jobs", "wait", straight, "--timeout", "240").stdout.strip() == "succeeded"
    resumed, uninterrupted = _digests(tmp_path / "resumed"), _digests(tmp_path / "straight")
    assert len(resumed) == 12 and resumed == uninterrupted
    assert not list(tmp_path.glob(".resumed.adp-staging-*")), "no staging left"
    assert not list((tmp_path / "state" / "service" / "models").glob("*.model"))

    served.kill(signal.SIGTERM)


def test_a_user_error_from_the_cli_client_is_one_line(served: Served, tmp_path: Path) -> None:
    served.start()
    token = served.adp("token", "issue", "--sub", "bob", "--role", "viewer").stdout.strip()
    served.env["DASK_ADP__SERVICE__TOKEN"] = token
    lake = write_lake(tmp_path / "lake")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job_spec(lake, tmp_path / "out")))
    denied = served.adp("submit", str(spec), check=False)
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: ") and "jobs:submit" in denied.stderr
    assert len(denied.stderr.strip().splitlines()) == 1 and "Traceback" not in denied.stderr
    served.env["DASK_ADP__SERVICE__TOKEN"] = "not-a-token"
    refused = served.adp("jobs", "list", check=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    gone = served.adp("jobs", "list", "--server", "http://127.0.0.1:9", check=False)
    assert gone.returncode == 1 and "cannot reach the ADP service" in gone.stderr


def test_sigterm_stops_running_jobs_as_interrupted_and_the_cluster_with_them(
    served: Served, tmp_path: Path
) -> None:
    import psutil

    lake = write_lake(tmp_path / "lake", parts=8, rows=8_000, seed=5)
    spec = job_spec(lake, tmp_path / "out", detector={"name": "knn"})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    served.start()
    assert served.proc is not None
    children = psutil.Process(served.proc.pid).children(recursive=True)
    assert children, "the service's LocalCluster runs in child processes"
    served.env["DASK_ADP__SERVICE__TOKEN"] = served.adp(
        "token", "issue", "--sub", "alice", "--role", "analyst"
    ).stdout.strip()
    job_id = served.adp("submit", str(path)).stdout.strip()
    wait_for(
        lambda: _status(served, job_id)["progress"]["stage"] == "score", timeout=120, every=0.05
    )

    served.proc.send_signal(signal.SIGTERM)
    served.proc.wait(60)
    gone, alive = psutil.wait_procs(children, timeout=20)
    assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE], alive

    served.start()
    status = _status(served, job_id)
    assert status["state"] == "interrupted" and "shut down" in status["error"], status
    assert "was running when the service stopped" not in served.log.read_text()
    assert not (tmp_path / "out").exists()

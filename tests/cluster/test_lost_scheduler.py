"""A scheduler lost mid-job: `adp run` ends at once with one line naming its address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from distributed.client import FutureCancelledError

from adp.cluster.lost import SchedulerLostError, lost_scheduler_is_an_error, scheduler_lost

ADP = [sys.executable, "-m", "adp.cli"]
DASK = str(Path(sys.executable).with_name("dask"))


class _Client:
    """What the check reads of a client: its status and its scheduler's address."""

    def __init__(self, status: str) -> None:
        self.status = status
        self.scheduler = type("rpc", (), {"address": "tcp://10.1.2.3:8786"})()


def test_a_lost_scheduler_is_one_error_naming_its_address() -> None:
    lost = FutureCancelledError("k", "scheduler-connection-lost")
    named = pytest.raises(SchedulerLostError, match=r"scheduler at tcp://10\.1\.2\.3:8786")
    with named, lost_scheduler_is_an_error(_Client("running")):
        raise lost
    with pytest.raises(SchedulerLostError), lost_scheduler_is_an_error(_Client("connecting")):
        raise RuntimeError("whatever the reconnecting client raised")
    # other errors, and cancellations for other reasons, pass unchanged
    with pytest.raises(FutureCancelledError), lost_scheduler_is_an_error(_Client("running")):
        raise FutureCancelledError("k", "user")
    with pytest.raises(KeyError), lost_scheduler_is_an_error(_Client("running")):
        raise KeyError("a")
    assert scheduler_lost(_Client("closed")) and not scheduler_lost(_Client("running"))


@pytest.mark.slow
def test_adp_run_ends_with_one_line_when_its_scheduler_dies(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    lake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(32):
        part = pd.DataFrame(rng.normal(size=(5000, 3)), columns=["a", "b", "c"])
        part["row"] = np.arange(5000) + 5000 * i
        part.to_parquet(lake / f"part-{i}.parquet", index=False)
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    job = tmp_path / "job.yaml"
    spec = {
        "source": {"uri": str(lake), "key": ["row"]},
        "detector": {"name": "knn", "params": {"n_neighbors": 100}},
        "fit": {"sample_rows": 5000},
        "threshold": {"contamination": 0.05},
        "output": {"uri": str(outdir / "scores")},
        "profile": False,
    }
    job.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(tmp_path / "state")}
    env.pop("DASK_ADP__AUDIT__URL", None)
    scheduler_file = tmp_path / "scheduler.json"
    log = (tmp_path / "cluster.log").open("wb")
    common = ["--scheduler-file", str(scheduler_file)]
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", *common],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    workers = subprocess.Popen(
        [DASK, "worker", "--nworkers", "2", "--nthreads", "1", "--no-dashboard", *common]
        + ["--local-directory", str(tmp_path / "workers")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            assert time.monotonic() < deadline, (tmp_path / "cluster.log").read_text()
            time.sleep(0.1)
        time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        proc = subprocess.Popen(
            [*ADP, "run", str(job), "--no-progress", "--scheduler", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 120
        while not any("staging" in str(p) for p in outdir.rglob("part.*")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the job never started scoring"
            time.sleep(0.05)
        killed = time.monotonic()
        scheduler.kill()
        _, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - killed
        time.sleep(3)  # the workers, still running, must not recreate the staging
        left = list(outdir.iterdir())
    finally:
        for p in (scheduler, workers):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in (scheduler, workers):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        log.close()
    assert proc.returncode == 1, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert errors[0].startswith("error: lost the connection to the Dask scheduler at " + address)
    assert took < 40, took
    assert left == []  # no output, no staging left

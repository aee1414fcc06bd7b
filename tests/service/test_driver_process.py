"""Jobs driven from a process of their own (``adp.service.driver: process``, the default of
``adp serve``): the API's process only queues; the child runs and cancels jobs; closing the
service leaves no child behind; a child that dies has its running jobs marked
``interrupted`` and is replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from service_site import Site, job_spec, start_site, wait_for, write_lake

from adp.errors import ServiceStartError

pytestmark = pytest.mark.slow


@pytest.fixture
def process_site(tmp_path: Path, state_dir: Path, client: Any) -> Iterator[Site]:
    started = start_site(tmp_path, client, max_running=1, driver="process")
    try:
        yield started
    finally:
        started.service.close()


def _child(site: Site) -> psutil.Process:
    process = site.service.driver._process
    assert process is not None and process.poll() is None
    return psutil.Process(process.pid)


def test_the_child_runs_and_cancels_jobs_and_ends_with_the_service(process_site: Site) -> None:
    site = process_site
    me = psutil.Process()
    assert site.service.client is not None  # the test's cluster, given to the service
    child = _child(site)
    assert child.ppid() == me.pid and child.pid != me.pid

    done = site.submit(job_spec(site.lake, site.out / "a", name="first")).json()["id"]
    final = site.wait(done)
    assert final["state"] == "succeeded", final
    assert final["summary"]["rows"] == 2000
    records = [r for r in site.audit() if r.job_id == done]
    assert ("job.run", "success") in {(r.event_type, r.outcome) for r in records}

    # a slow job (k-NN on 20 partitions), cancelled by its owner while it runs
    write_lake(site.lake / "big", parts=20, rows=2000)
    slow = job_spec(site.lake / "big", site.out / "b", name="slow")
    slow["detector"] = {"name": "knn"}
    job_id = site.submit(slow).json()["id"]
    wait_for(lambda: site.job(job_id)["state"] == "running", 60)
    # the child runs at most the service's max_running (1 here, not the config's default)
    waiting = site.submit(job_spec(site.lake, site.out / "c", name="waiting")).json()["id"]
    time.sleep(1.5)
    assert site.job(waiting)["state"] == "queued"
    answer = site.http.post(f"/jobs/{job_id}/cancel", headers=site.headers("alice", "analyst"))
    assert answer.status_code == 202, answer.text
    assert site.wait(job_id)["state"] == "cancelled"
    assert not (site.out / "b").exists(), "a cancelled job publishes nothing"
    assert site.wait(waiting)["state"] == "succeeded"

    site.service.close()
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    site.service.close()  # idempotent


def test_a_dead_child_has_its_jobs_interrupted_and_is_replaced(process_site: Site) -> None:
    site = process_site
    write_lake(site.lake / "big", parts=20, rows=2000)
    slow = job_spec(site.lake / "big", site.out / "b", name="slow")
    slow["detector"] = {"name": "knn"}
    job_id = site.submit(slow).json()["id"]
    wait_for(lambda: site.job(job_id)["state"] == "running", 60)
    first = _child(site)
    os.kill(first.pid, signal.SIGKILL)

    final = site.wait(job_id)
    assert final["state"] == "interrupted", final
    assert "driver process died" in final["error"]
    outcomes = {(r.event_type, r.outcome) for r in site.audit() if r.job_id == job_id}
    assert ("service.restart", "interrupted") in outcomes

    # a new child took over: the next job runs, and the interrupted one resumes
    second = wait_for(lambda: site.service.driver.alive and _child(site), 60)
    assert second.pid != first.pid
    again = site.submit(job_spec(site.lake, site.out / "c", name="after")).json()["id"]
    assert site.wait(again)["state"] == "succeeded"
    answer = site.http.post(f"/jobs/{job_id}/resume", headers=site.headers("alice", "analyst"))
    assert answer.status_code == 202, answer.text
    resumed = site.wait(job_id, timeout=180)
    assert resumed["state"] == "succeeded" and resumed["attempt"] == 2, resumed


def test_a_driver_that_cannot_reach_its_scheduler_stops_the_start(
    tmp_path: Path, state_dir: Path
) -> None:
    import dask.config

    from adp.config import settings
    from adp.service.server import Service

    options = settings().service.model_copy(
        update={"scheduler": "tcp://127.0.0.1:9", "driver": "process"}
    )
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(ServiceStartError, match="job driver cannot start") as caught,
    ):
        Service.start(options)
    assert "127.0.0.1:9" in str(caught.value)


def test_the_driver_gets_bounded_malloc_arenas_unless_the_environment_says_otherwise() -> None:
    from adp.service.driver_process import DRIVER_MALLOC, driver_environ

    assert driver_environ({"PATH": "/bin"}) == {"PATH": "/bin", **DRIVER_MALLOC}
    mine = driver_environ({"MALLOC_ARENA_MAX": "8"})
    assert mine["MALLOC_ARENA_MAX"] == "8"
    assert mine["MALLOC_TRIM_THRESHOLD_"] == DRIVER_MALLOC["MALLOC_TRIM_THRESHOLD_"]

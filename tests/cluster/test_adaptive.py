"""Adaptive workers on a real LocalCluster, the scheduler API route the operator's
DaskAutoscaler reads, and a job spec's cluster section yielding to an injected scheduler."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import dask
import dask.config
import httpx
import pytest
import yaml
from distributed import Client

import adp
from adp.cluster import cluster_for
from adp.errors import ConfigError

CLUSTER_CONFIG = Path(__file__).resolve().parents[2] / "cluster" / "dask.yaml"
FAST = {"interval": "200ms", "wait_count": 2, "target_duration": "1s"}


def _workers(client: Client) -> int:
    return len(client.scheduler_info(n_workers=-1)["workers"])


def _slow(i: int) -> int:
    time.sleep(0.4)
    return i


@pytest.mark.slow
def test_workers_grow_with_queued_work_and_shrink_back() -> None:
    with adp.connect(
        n_workers=1,
        dashboard_address="127.0.0.1:0",
        install_plugins=False,
        adapt={"minimum": 1, "maximum": 3, **FAST},
    ) as client:
        assert _workers(client) == 1
        futures = client.map(_slow, range(60), pure=False)
        most = 1
        deadline = time.monotonic() + 60
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            most = max(most, _workers(client))
            time.sleep(0.1)
        assert sum(client.gather(futures)) == sum(range(60))
        assert most > 1, "no worker was added while 60 tasks queued"
        deadline = time.monotonic() + 60
        while _workers(client) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _workers(client) == 1, "the idle workers were not retired"


def test_adapt_is_refused_for_a_scheduler_adp_did_not_start(client: Client) -> None:
    with pytest.raises(ConfigError, match="DaskAutoscaler"):
        adp.connect(client.scheduler.address, adapt={"minimum": 1, "maximum": 2})
    with pytest.raises(ConfigError, match=r"^adapt: maximum \(2\) is below minimum \(3\)"):
        adp.connect(adapt={"minimum": 3, "maximum": 2})
    with pytest.raises(ConfigError, match=r"^adapt\.maximum: "):
        adp.connect(adapt={"minimum": 1})


def test_a_spec_cluster_section_yields_to_an_injected_scheduler(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    address = client.scheduler.address
    with (
        dask.config.set({"scheduler-address": address}),
        caplog.at_level(logging.WARNING, logger="adp.cluster.connect"),
        cluster_for(None, n_workers=4, adapt={"minimum": 1, "maximum": 2}) as c,
    ):
        assert c.scheduler.address == address
    assert "yields to the scheduler" in caplog.text and "n_workers" in caplog.text


def test_the_pod_config_enables_the_adaptive_target_route() -> None:
    config = yaml.safe_load(CLUSTER_CONFIG.read_text())
    routes = config["distributed"]["scheduler"]["http"]["routes"]
    assert "distributed.http.scheduler.api" in routes
    with (
        dask.config.set({"distributed.scheduler.http.routes": routes}),
        adp.connect(n_workers=1, dashboard_address="127.0.0.1:0", install_plugins=False) as c,
    ):
        url = c.dashboard_link.replace("/status", "/api/v1/adaptive_target")
        futures = c.map(_slow, range(40), pure=False)
        # A loaded machine may take a while to bring the tasks to the scheduler: ask until
        # the queue shows (CI once saw the target still at 1 after a fixed second).
        deadline, target = time.monotonic() + 30, 0
        while target <= 1 and time.monotonic() < deadline:
            answer = httpx.get(url, timeout=5)
            assert answer.status_code == 200
            target = answer.json()["workers"]
            time.sleep(0.2)
        assert target > 1, "queued partitions ask for more workers"
        c.cancel(futures)


def test_a_job_spec_asks_for_adaptive_workers_and_bad_bounds_name_the_field() -> None:
    from adp.errors import SpecError
    from adp.jobs.spec import JobSpec

    base = {
        "name": "adaptive",
        "source": {"uri": "/data/lake"},
        "detector": {"name": "hbos"},
        "output": {"uri": "/data/out"},
    }
    spec = JobSpec.from_dict({**base, "cluster": {"adapt": {"minimum": 1, "maximum": 4}}})
    assert spec.cluster.adapt is not None and spec.cluster.adapt.maximum == 4
    with pytest.raises(SpecError, match=r"cluster\.adapt"):
        JobSpec.from_dict({**base, "cluster": {"adapt": {"minimum": 5, "maximum": 4}}})

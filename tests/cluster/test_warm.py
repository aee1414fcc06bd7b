"""A LocalCluster ADP starts imports the scoring stack on its workers at once."""

from __future__ import annotations

import sys
import time

import dask
import pytest

import adp
from adp.cluster.warm import WARM_MODULES, warm_workers


def _imported(name: str) -> bool:
    return name in sys.modules


def _wait_until_imported(client, name: str, timeout: float = 60.0) -> dict[str, bool]:
    deadline = time.monotonic() + timeout
    while True:
        seen = client.run(_imported, name)
        if all(seen.values()) or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


@pytest.mark.slow
def test_connect_warms_the_workers_of_a_cluster_it_starts() -> None:
    with adp.connect(n_workers=2, threads_per_worker=1, install_plugins=False) as client:
        seen = _wait_until_imported(client, "adp.detect.fitting")
        assert len(seen) == 2 and all(seen.values()), seen


@pytest.mark.slow
def test_warming_is_one_task_per_worker_that_imports_the_stack() -> None:
    with (
        dask.config.set({"adp.cluster.warm-workers": False}),
        adp.connect(n_workers=2, threads_per_worker=1, install_plugins=False) as client,
    ):
        assert not any(client.run(_imported, "adp.detect.detection").values())
        futures = warm_workers(client)
        assert len(futures) == 2
        assert [f.result(timeout=60) for f in futures] == [list(WARM_MODULES)] * 2
        assert all(client.run(_imported, "adp.detect.detection").values())
        assert {f.key.split("-")[1] for f in futures} == {"warm"}

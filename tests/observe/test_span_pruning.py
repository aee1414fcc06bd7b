"""Finished spans are forgotten on a long-running scheduler (dask/distributed#7977)."""

from __future__ import annotations

import time

import dask
import pytest
from distributed import Client, LocalCluster

from adp.observe.plugins import install
from adp.observe.span_pruning import PRUNER_NAME, prune_spans


def _spans(dask_scheduler) -> int:  # type: ignore[no-untyped-def]
    return len(dask_scheduler.extensions["spans"].spans)


@pytest.fixture(scope="module")
def cluster_client():
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield cluster, client


def test_finished_and_forgotten_spans_are_removed_recent_ones_kept(cluster_client) -> None:
    cluster, client = cluster_client
    scheduler = cluster.scheduler
    for i in range(5):
        with dask.annotate(span={"name": (f"job-{i}",), "ids": (f"id-{i}",)}):
            assert client.submit(sum, [i, 1], pure=False).result() == i + 1
    held = client.submit(sum, [10, 1], key="held-1")  # a future still referenced
    assert held.result() == 11
    deadline = time.monotonic() + 10  # the unreferenced futures' tasks are forgotten
    while set(scheduler.tasks) != {"held-1"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(scheduler.tasks) == {"held-1"}
    before = client.run_on_scheduler(_spans)
    assert before >= 2

    # nothing is old enough yet: all kept
    assert prune_spans(scheduler, keep_seconds=600) == 0
    assert client.run_on_scheduler(_spans) == before

    # an hour later: every span whose groups were forgotten goes; the held one stays
    removed = prune_spans(scheduler, keep_seconds=600, now=time.time() + 3600)
    assert removed >= 1
    ext = scheduler.extensions["spans"]
    left = list(ext.spans.values())
    assert left, "the span of the future still held must stay"
    for span in left:
        assert any(scheduler.task_groups.get(tg.name) is tg for tg in span.traverse_groups())
    assert all(span.id in ext.spans for span in ext.root_spans)
    for index in (ext.spans_search_by_name, ext.spans_search_by_tag):
        assert all(span.id in ext.spans for spans in index.values() for span in spans)

    # the scheduler still works and accounts for new work afterwards
    del held
    assert client.submit(sum, [2, 2], pure=False).result() == 4
    assert client.run_on_scheduler(_spans) >= 1


def test_install_registers_the_pruner_once(cluster_client) -> None:
    cluster, client = cluster_client
    install(client, audit=False)
    install(client, audit=False)
    names = [name for name in cluster.scheduler.plugins if name == PRUNER_NAME]
    assert names == [PRUNER_NAME]

"""``install(client)`` on in-process LocalClusters, several schedulers in one process, the
plugin's lifecycle, and a small run of the overhead benchmark."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import pytest
from click.testing import CliRunner
from distributed import Client, LocalCluster
from prometheus_client.parser import text_string_to_metric_families

from adp.bench.plugin_overhead import plugins
from adp.observe.audit import AuditLog
from adp.observe.events import report
from adp.observe.plugins import PLUGIN_NAME, AdpSchedulerPlugin, install

pytestmark = pytest.mark.slow


def rows_scored(cluster: LocalCluster) -> float:
    url = f"http://127.0.0.1:{cluster.scheduler.http_server.port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "adp_rows_scored":
            return family.samples[0].value
    raise AssertionError("adp_rows_scored is missing from /metrics")


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


def local(**kwargs: Any) -> LocalCluster:
    return LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        dashboard_address="127.0.0.1:0",
        **kwargs,
    )


def test_each_scheduler_in_a_process_reports_its_own_counts(tmp_path: Path) -> None:
    with (
        dask.config.set({"adp.state-dir": str(tmp_path / "state"), "adp.audit.url": None}),
        local(scheduler_kwargs={"preload": ["adp.observe.plugins"]}) as first,
        local() as second,
        Client(first) as c1,
        Client(second) as c2,
    ):
        install(c2, audit=False)
        c1.gather([c1.submit(report, rows_scored=5, pure=False) for _ in range(3)])
        c2.gather(c2.submit(report, rows_scored=7, pure=False))
        assert wait_for(lambda: rows_scored(first) == 15), rows_scored(first)
        assert wait_for(lambda: rows_scored(second) == 7), rows_scored(second)
        plugin = second.scheduler.plugins[PLUGIN_NAME]
        assert isinstance(plugin, AdpSchedulerPlugin) and not plugin.audit
        # unregistering stops the plugin: its scheduler's figures drop to zero
        c2.unregister_scheduler_plugin(PLUGIN_NAME)
        assert wait_for(lambda: plugin._closed)
        assert rows_scored(second) == 0 and rows_scored(first) == 15
    with AuditLog(state_dir=tmp_path / "state", create=False) as log:
        records = log.records()
        assert {r.source for r in records} == {"scheduler"} and len(records) == 3  # 3 submits
        assert log.verify().ok


def test_close_writes_queued_audit_records(tmp_path: Path) -> None:
    """A graph submitted just before the scheduler closes is still audited."""
    with dask.config.set({"adp.state-dir": str(tmp_path / "state"), "adp.audit.url": None}):
        with local() as cluster, Client(cluster) as client:
            client.register_plugin(AdpSchedulerPlugin(flush_interval=3600))  # close() writes
            plugin = cluster.scheduler.plugins[PLUGIN_NAME]
            assert client.compute(dask.delayed(sum)([1, 2])).result() == 3
            assert len(plugin._pending) == 1
        with AuditLog(create=False) as log:
            (record,) = log.records()
            assert record.details_data()["prefixes"] == {"sum": 1}


def test_unreachable_audit_database_is_counted_not_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the database directory should be")
    url = f"sqlite:///{blocker / 'audit.db'}"
    with (
        dask.config.set({"adp.state-dir": str(tmp_path / "state")}),
        local() as cluster,
        Client(cluster) as client,
    ):
        install(client, audit_url=url)
        plugin = cluster.scheduler.plugins[PLUGIN_NAME]
        assert client.compute(dask.delayed(sum)([1, 2])).result() == 3
        assert wait_for(lambda: plugin.metrics.value("audit_write_failures") >= 1)
        assert plugin.metrics.value("audit_records") == 0
        assert len(plugin._pending) == 1  # kept for a retry


def test_bench_plugins_command_runs() -> None:
    args = ["--partitions", "8", "--repeats", "1", "--no-warmup", "--json"]
    outcome = CliRunner().invoke(plugins, args)
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert result["rows_scored_counted"] == result["rows_expected"] == 8 * 200
    for key in ("bare_seconds", "report_seconds", "plugins_seconds", "ratio", "report_call_us"):
        assert result[key] > 0, key
    assert {len(v) for v in result["runs"].values()} == {1}

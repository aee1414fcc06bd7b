"""The preload path end to end: ``dask scheduler --preload adp.observe.plugins`` in a real
subprocess, two worker processes, exact counts on ``/metrics``, audited graphs, promtool and a
real Prometheus server scraping the scheduler."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
from distributed import Client
from observe_helpers import require_tool
from prometheus_client.parser import text_string_to_metric_families

from adp.bench.plugin_overhead import _partition, _score
from adp.observe.audit import AuditLog
from adp.observe.events import report, report_client
from adp.observe.plugins import install

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))


@dataclass
class Cluster:
    client: Client
    metrics_url: str
    dashboard_port: int
    state: Path
    log_file: Path


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("preload")
    state = root / "state"
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state)}
    env.pop("DASK_ADP__AUDIT__URL", None)
    log_file = root / "cluster.log"
    out = log_file.open("wb")
    scheduler_file = root / "scheduler.json"
    commands = [
        [DASK, "scheduler", "--preload", "adp.observe.plugins", "--host", "127.0.0.1"]
        + ["--port", "0", "--dashboard-address", "127.0.0.1:0"],
        # two worker processes; they wait for the scheduler file
        [DASK, "worker", "--nworkers", "2", "--nthreads", "1", "--no-dashboard"]
        + ["--local-directory", str(root / "workers")],
    ]
    procs = [
        subprocess.Popen(
            command + ["--scheduler-file", str(scheduler_file)],
            env=env,
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        for command in commands
    ]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists():
            if procs[0].poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the scheduler did not start:\n{log_file.read_text()}")
            time.sleep(0.1)
        time.sleep(0.1)  # the file is written in one go, but let it be closed
        info = json.loads(scheduler_file.read_text())
        address, port = info["address"], int(info["services"]["dashboard"])
        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
            yield Cluster(client, f"http://127.0.0.1:{port}/metrics", port, state, log_file)
    finally:
        _stop(procs)
        out.close()


def scrape(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, suffix: str = "_total") -> float:
    (value,) = [s.value for s in families[name].samples if s.name == name + suffix]
    return value


def wait_until(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.1)


def test_worker_figures_are_counted_exactly(cluster: Cluster) -> None:
    client = cluster.client
    before = scrape(cluster.metrics_url)
    base_rows = sample(before, "adp_rows_scored")
    base_obs = sample(before, "adp_partition_score_seconds", "_count")
    futures = [
        client.submit(report, rows_scored=100 + i, anomalies_flagged=i % 3, pure=False)
        for i in range(20)
    ]
    client.gather(futures)
    frame = dd.from_map(_partition, range(12), rows=77)
    meta = pd.DataFrame({"score": pd.Series(dtype="float64"), "is_anomaly": pd.Series(dtype=bool)})
    scored = frame.map_partitions(_score, 1, True, meta=meta)["is_anomaly"].sum()
    with dask.annotate(adp_job_id="job-42"):  # around the compute call, not the collection
        flagged = client.compute(scored).result()
    expected_rows = base_rows + sum(100 + i for i in range(20)) + 12 * 77

    def counted() -> dict[str, Any] | None:
        families = scrape(cluster.metrics_url)
        return families if sample(families, "adp_rows_scored") == expected_rows else None

    families = wait_until(counted)
    assert families, f"rows_scored never reached {expected_rows}"
    assert sample(families, "adp_anomalies_flagged") == (
        sample(before, "adp_anomalies_flagged") + sum(i % 3 for i in range(20)) + flagged
    )
    assert sample(families, "adp_partition_score_seconds", "_count") == base_obs + 12
    for family in families.values():
        if family.name.startswith("adp_"):
            assert all(set(s.labels) <= {"le"} for s in family.samples), family
    assert sample(families, "adp_graphs_submitted") >= sample(before, "adp_graphs_submitted") + 2
    with AuditLog(state_dir=cluster.state, create=False) as log:
        (graph,) = wait_until(lambda: log.records(job_id="job-42"))
        assert graph.source == "scheduler" and graph.details_data()["prefixes"]["score"] == 12


def test_client_figures_are_counted(cluster: Cluster) -> None:
    before = scrape(cluster.metrics_url)
    report_client(cluster.client, jobs_started=1, rows_read=500, fit_seconds=1.5)
    report_client(cluster.client, jobs_finished=1, bytes_read=4096)
    after = scrape(cluster.metrics_url)
    for name, delta in [
        ("adp_jobs_started", 1),
        ("adp_jobs_finished", 1),
        ("adp_rows_read", 500),
        ("adp_fit_seconds", 1.5),
        ("adp_bytes_read", 4096),
        ("adp_jobs_failed", 0),
    ]:
        assert sample(after, name) - sample(before, name) == delta, name


def test_graph_submissions_are_audited(cluster: Cluster) -> None:
    client = cluster.client
    with dask.annotate(adp_job_id="job-audit"):
        total = client.compute(dask.delayed(sum)([dask.delayed(abs)(-i) for i in range(5)]))
    assert total.result() == 10
    with AuditLog(state_dir=cluster.state, create=False) as log:

        def audited() -> list[Any]:
            return [r for r in log.records(job_id="job-audit") if r.source == "scheduler"]

        records = wait_until(audited)
        assert records, cluster.log_file.read_text()
        (record,) = records
        details = record.details_data()
        assert record.event_type == "graph.submitted" and record.outcome == "success"
        assert record.identity == client.id and details["client"] == client.id
        assert details["tasks"] == 6 and details["prefixes"] == {"abs": 5, "sum": 1}
        assert record.resource == client.scheduler.address
        result = log.verify()
        assert result.ok and result.records_checked >= 1, result
    after = scrape(cluster.metrics_url)
    assert sample(after, "adp_audit_records") >= 1
    assert sample(after, "adp_audit_write_failures") == 0


def test_install_is_idempotent(cluster: Cluster) -> None:
    def plugin_id(dask_scheduler: Any) -> int:
        return id(dask_scheduler.plugins["adp"])

    client = cluster.client
    before = client.run_on_scheduler(plugin_id)
    rows = sample(scrape(cluster.metrics_url), "adp_rows_scored")
    install(client)
    install(client)
    assert client.run_on_scheduler(plugin_id) == before
    assert sample(scrape(cluster.metrics_url), "adp_rows_scored") == rows


def test_promtool_accepts_the_scheduler_metrics(cluster: Cluster) -> None:
    promtool = require_tool("promtool")
    with urllib.request.urlopen(cluster.metrics_url, timeout=10) as response:
        text = response.read().decode()
    assert "adp_rows_scored_total" in text
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_prometheus_server_scrapes_the_scheduler(cluster: Cluster, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    expected = sample(scrape(cluster.metrics_url), "adp_rows_scored")
    assert expected > 0
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 500ms, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: dask-scheduler\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{cluster.dashboard_port}']}}]\n"
    )
    port = _free_port()
    server = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}"]
        + [f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    query = urllib.parse.urlencode({"query": "adp_rows_scored_total"})
    url = f"http://127.0.0.1:{port}/api/v1/query?{query}"

    def answer() -> float | None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = json.load(response)
        except OSError:
            return None
        result = body.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if result else None

    try:
        value = wait_until(answer, timeout=40)
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    assert value == expected, err.decode()[-2000:]


def test_adp_run_against_the_preloaded_scheduler_counts_exactly(
    cluster: Cluster, tmp_path: Path
) -> None:
    """`adp run --scheduler`: every scored row, the flags and the job are on /metrics."""
    import numpy as np
    import yaml

    lake = tmp_path / "lake"
    lake.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        part = pd.DataFrame(rng.normal(size=(700, 3)), columns=["a", "b", "c"])
        part["row"] = np.arange(700) + 700 * i
        part.to_parquet(lake / f"part-{i}.parquet", index=False)
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "source": {"uri": str(lake), "key": ["row"]},
                "detector": {"name": "ecod"},
                "threshold": {"contamination": 0.1},
                "output": {"uri": str(tmp_path / "scores")},
            }
        )
    )
    before = scrape(cluster.metrics_url)
    address = cluster.client.scheduler.address
    proc = subprocess.run(
        [sys.executable, "-m", "adp.cli", "run", str(job), "--scheduler", address],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr

    def counted() -> dict[str, Any] | None:
        families = scrape(cluster.metrics_url)
        done = sample(families, "adp_jobs_finished") - sample(before, "adp_jobs_finished")
        return families if done == 1 else None

    families = wait_until(counted)
    assert families, "the job never showed up as finished on /metrics"
    for name, delta in [
        ("adp_rows_scored", 2100),
        ("adp_rows_read", 2100),
        ("adp_anomalies_flagged", 210),
        ("adp_jobs_started", 1),
        ("adp_jobs_failed", 0),
    ]:
        assert sample(families, name) - sample(before, name) == delta, name

"""Every notebook runs end to end in a real kernel against a real scheduler (preloaded with
ADP's plugin) and two worker processes: no cell fails, every plot cell draws inline, and
what the notebook prints agrees with what the test knows or checks on its own."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import nbformat
import pytest
from notebook_support import NOT_INHERITED, NotebookCluster, number, plots_drawn, scrape

# Under pytest-xdist (--dist loadgroup) the notebooks run in one worker and share its one
# cluster; the PostgreSQL one joins the "postgres" group instead (tests/conftest.py).
pytestmark = pytest.mark.xdist_group("notebooks")

PER_DAY = 288  # demo lake rows per sensor and day (adp.jobs.demo_lake)


@pytest.mark.slow
def test_quickstart(run_notebook, tmp_path: Path) -> None:
    from adp.jobs.demo_lake import generate

    lake = generate(tmp_path / "lake", sensors=5, days=2)
    run = run_notebook("quickstart", ADP_DEMO_LAKE=str(lake.path))
    assert number(r"([\d,]+) rows scored", run.text) == lake.rows == 5 * 2 * PER_DAY
    assert re.search(r"precision \d\.\d{3}, recall \d\.\d{3}", run.text)
    plots_drawn(run)


@pytest.mark.slow
def test_lake_detect_explain(run_notebook) -> None:
    run = run_notebook("lake_detect_explain")
    rows = 8 * 2 * PER_DAY
    assert number(r"([\d,]+) rows scored", run.text) == rows
    assert number(r"(\d+) flagged at score", run.text) >= 0.02 * rows
    assert "first-ranked feature by kind" in run.text
    plots_drawn(run)


@pytest.mark.slow
def test_search_registry_job(run_notebook, notebook_cluster: NotebookCluster) -> None:
    run = run_notebook("search_registry_job")
    assert "6 trials on futures" in run.text
    version = number(r"registered notebook-sensors@(\d+)", run.text)
    assert number(r"job: ([\d,]+) rows scored with notebook-sensors@", run.text) == 8 * 2 * PER_DAY
    # the version is in the registry of the state the notebook was given, as the test reads it
    from adp.models.api import ModelRegistry

    state = notebook_cluster.state
    registry = ModelRegistry(f"sqlite:///{state / 'models.db'}", str(state / "models"))
    try:
        assert version in [v.version for v in registry.versions("notebook-sensors")]
    finally:
        registry.close()
    plots_drawn(run)


@pytest.fixture
def sql_table(pg_url: str) -> Iterator[str]:
    """A unique table name; it and its ``_scores`` table are dropped afterwards."""
    import sqlalchemy as sa

    name = f"nb_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            for table in sa.inspect(conn).get_table_names():
                if table.startswith(name):
                    sa.Table(table, sa.MetaData()).drop(conn)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sql_and_s3(run_notebook, pg_url: str, sql_table: str, s3) -> None:
    import sqlalchemy as sa

    bucket = f"nb-{uuid.uuid4().hex[:10]}"  # the notebook creates it
    run = run_notebook(
        "sql_and_s3",
        ADP_PG_URL=pg_url,
        ADP_SQL_TABLE=sql_table,
        ADP_S3_ENDPOINT=s3.endpoint,
        ADP_S3_BUCKET=bucket,
    )
    assert number(r"([\d,]+) rows in \w+ after two upserts", run.text) == 6000
    assert "scores equal to the SQL run's" in run.text
    assert number(r"job: ([\d,]+) rows", run.text) == 6000
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            scores = sa.Table(f"{sql_table}_scores", sa.MetaData(), autoload_with=conn)
            stored = conn.execute(sa.select(sa.func.count()).select_from(scores)).scalar()
    finally:
        engine.dispose()
    assert stored == 6000
    assert s3.fs().exists(f"{bucket}/scores/_adp_manifest.json")
    plots_drawn(run)


@pytest.mark.slow
def test_xarray_sensors(run_notebook) -> None:
    run = run_notebook("xarray_sensors")
    assert number(r"([\d,]+) rows in 5 partitions", run.text) == (240 - 2) * 12
    assert "all 5 injected spikes flagged at their (time, sensor) coordinates" in run.text
    plots_drawn(run)


@pytest.mark.slow
def test_audit_and_metrics(run_notebook, notebook_cluster: NotebookCluster) -> None:
    from adp.observe.audit import AuditLog

    before = scrape(notebook_cluster.metrics_url)
    run = run_notebook("audit_and_metrics")
    rows = number(r"job notebook-\w+: ([\d,]+) rows", run.text)
    assert rows == 4 * 2 * PER_DAY
    # nothing else runs on the cluster meanwhile: the notebook's differences are exact
    assert number(r"rows scored \+([\d,]+)", run.text) == rows
    after = scrape(notebook_cluster.metrics_url)
    assert after["adp_rows_scored_total"] - before["adp_rows_scored_total"] == rows
    assert after["adp_jobs_finished_total"] - before["adp_jobs_finished_total"] == 1
    job_id = re.search(r"job (notebook-\w+):", run.text).group(1)
    with AuditLog(state_dir=notebook_cluster.state, create=False) as log:
        records = log.records(job_id=job_id)
        assert log.verify().ok
    assert {"scheduler", "api"} <= {r.source for r in records}
    assert number(r"(\d+) audit records for notebook-", run.text) == len(records)
    plots_drawn(run)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def service(notebook_cluster: NotebookCluster, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``adp serve`` on the notebook cluster, with a state of its own; (url, token)."""
    from adp.service.identity import issue_token

    state = tmp_path / "service-state"
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in NOT_INHERITED and not k.startswith("DASK_ADP__SERVICE")
    }
    env["DASK_ADP__STATE_DIR"] = str(state)
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "adp.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--scheduler", notebook_cluster.address]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield url, issue_token("alice", ["analyst"], timedelta(hours=1), state_dir=state)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.mark.slow
def test_service_jobs(run_notebook, service: tuple[str, str]) -> None:
    url, token = service
    run = run_notebook("service_jobs", ADP_SERVICE_URL=url, ADP_SERVICE_TOKEN=token)
    assert "as alice with roles ['analyst']" in run.text
    assert number(r"succeeded in [\d.]+ s: ([\d,]+) rows scored", run.text) == 6 * 2 * PER_DAY
    job_id = re.search(r"job (\w{32}) succeeded", run.text).group(1)
    answer = httpx.get(f"{url}/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"})
    assert answer.json()["state"] == "succeeded" and answer.json()["owner"] == "alice"
    assert token not in nbformat.writes(run.notebook)  # the token is never shown
    plots_drawn(run)


def test_every_notebook_has_a_test() -> None:
    names = {p.stem for p in (Path(__file__).parents[2] / "notebooks").glob("*.py")}
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    assert "quickstart" in names and names <= tested


@pytest.mark.slow
def test_feedback(run_notebook, tmp_path: Path) -> None:
    from adp.feedback.labels import LabelStore
    from adp.models.api import ModelRegistry

    run = run_notebook("feedback")
    assert number(r"[\d,]+ rows, (\d+) injected anomalies", run.text) > 0
    assert "first row to review: {" in run.text
    assert number(r"(\d+) rows labelled", run.text) == 80
    # what the notebook wrote, as the test reads it: labels and versions with lineage
    work = tmp_path / "data" / "feedback"
    store = LabelStore(f"sqlite:///{work / 'labels.db'}")
    registry = ModelRegistry(f"sqlite:///{work / 'models.db'}", str(work / "models"))
    try:
        labels = store.labels("feedback-sensors")
        assert len(labels) == 80 and {lab.who for lab in labels} == {"notebook-analyst"}
        versions = {v.version: v for v in registry.versions("feedback-sensors")}
        assert sorted(versions) == [1, 2, 3]
        assert {versions[2].method, versions[3].method} == {"threshold", "semi_supervised"}
        assert {versions[2].parent, versions[3].parent} == {"feedback-sensors@1"}
    finally:
        store.close()
        registry.close()
    before, after = (
        float(x)
        for x in re.search(r"before (\d\.\d{3}), after (\d\.\d{3})", run.text).groups()  # type: ignore[union-attr]
    )
    assert 0 < before < after <= 1, "80 labels teach the semi-supervised version something"
    plots_drawn(run)


@pytest.mark.slow
def test_streaming(run_notebook) -> None:
    redis = pytest.importorskip("redis")
    url = "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except Exception as exc:  # any failure to reach it
        from ci_support import need_in_ci

        need_in_ci(f"Redis is not reachable at {url}: {exc}")
    run = run_notebook("streaming", ADP_REDIS_URL=url)
    assert number(r"([\d,]+) events in the Redis stream", run.text) == 3000
    for name in ("fitted", "adaptive"):
        assert number(rf"{name}: \d+ of ([\d,]+) events flagged", run.text) == 3000
        assert number(rf"{name}: (\d+) of [\d,]+ events flagged", run.text) > 0
    stream = re.search(r"in the Redis stream (\S+)", run.text).group(1)  # type: ignore[union-attr]
    assert not redis.Redis.from_url(url).exists(stream), "the notebook cleans up its stream"
    plots_drawn(run)


def _share(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the notebook's output:\n{text[-3000:]}"
    return float(found.group(1))


@pytest.mark.slow
def test_fleet(run_notebook) -> None:
    run = run_notebook("fleet")
    assert number(r"fleet: ([\d,]+) rows of 10 sensors", run.text) == 10 * 3 * PER_DAY
    off = [_share(r"context off: precision (\d\.\d+)", run.text)]
    on = [_share(r"context on: precision (\d\.\d+)", run.text)]
    off_recall = _share(r"context off: precision \d\.\d+, recall (\d\.\d+)", run.text)
    on_recall = _share(r"context on: precision \d\.\d+, recall (\d\.\d+)", run.text)
    # at the same flag rate, the context run finds more of the injected anomalies, and
    # more of what it flags is injected
    assert on[0] > off[0] and on_recall > off_recall, (on, off, on_recall, off_recall)
    # the daily peak no longer draws flags: fewer of its clean rows are flagged
    peak_off = _share(r"context off \(iforest\): flags ([\d.]+)% of clean peak rows", run.text)
    peak_on = _share(r"context on \(mcd\): flags ([\d.]+)% of clean peak rows", run.text)
    assert peak_on < peak_off / 2, (peak_on, peak_off)
    plots_drawn(run)

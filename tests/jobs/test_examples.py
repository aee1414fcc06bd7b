"""Every spec in examples/ is valid (``adp validate``) and runs, on a small demo lake the test
generates in a scratch directory (the specs' relative paths resolve against it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from adp.jobs.cli import validate
from adp.jobs.demo_lake import generate
from adp.jobs.spec import JobSpec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOCAL = ["score-lake.yaml", "search.yaml", "sql-table.yaml"]


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch directory holding data/demo-lake (6 sensors, 2 days), as the cwd."""
    monkeypatch.chdir(tmp_path)
    generate(tmp_path / "data" / "demo-lake", sensors=6, days=2)
    return tmp_path


def test_every_example_is_listed_and_tested() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted([*LOCAL, "s3-lake.yaml"])
    readme = (EXAMPLES / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in [*LOCAL, "s3-lake.yaml"])


@pytest.mark.parametrize("name", LOCAL)
def test_local_examples_validate(workdir, name) -> None:
    result = CliRunner().invoke(validate, [str(EXAMPLES / name)])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


@pytest.mark.slow
def test_score_and_sql_examples_run(client, workdir) -> None:
    from adp.jobs.console import run_and_report

    rows = 6 * 2 * 288
    spec = JobSpec.from_yaml(EXAMPLES / "score-lake.yaml")
    result = run_and_report(
        spec, scheduler=client.scheduler.address, report_path=None, progress=False
    )
    assert result.rows == rows and result.evaluation is not None
    assert result.evaluation.recall > 0.3
    assert len(pd.read_parquet(workdir / "out" / "example-score")) == rows
    assert "<svg" in (workdir / "out" / "example-score.html").read_text()

    spec = JobSpec.from_yaml(EXAMPLES / "sql-table.yaml")
    for _ in range(2):  # upsert: a rerun neither duplicates nor loses rows
        run_and_report(spec, scheduler=client.scheduler.address, report_path=None, progress=False)
    table = pd.read_sql_table("example_scores", f"sqlite:///{workdir / 'data' / 'scores.db'}")
    assert len(table) == rows
    assert "<svg" in (workdir / "out" / "example-sql.html").read_text()


@pytest.mark.slow
def test_search_example_runs_and_registers(client, workdir) -> None:
    from adp.jobs.preflight import preflight
    from adp.jobs.search import run_search_job

    spec = JobSpec.from_yaml(EXAMPLES / "search.yaml")
    preflight(spec)
    result = run_search_job(spec, client)
    assert len(result.leaderboard) >= 1
    assert str(result.extra["registered"]).startswith("example-searched@")


@pytest.mark.slow
def test_s3_example_validates_and_runs_with_the_endpoint_from_the_environment(workdir, s3) -> None:
    fs = s3.fs()
    if not fs.exists("adp-examples"):
        fs.mkdir("adp-examples")
    fs.put(str(workdir / "data" / "demo-lake"), "adp-examples/demo-lake", recursive=True)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    adp = [sys.executable, "-m", "adp.cli"]
    spec = str(EXAMPLES / "s3-lake.yaml")
    check = subprocess.run(
        [*adp, "validate", spec], capture_output=True, text=True, env=env, timeout=60
    )
    assert check.returncode == 0, check.stderr
    run = subprocess.run(
        [*adp, "run", spec, "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=workdir,
    )
    assert run.returncode == 0, run.stderr
    import adp

    scores = adp.read("s3://adp-examples/scores/", storage_options=s3.options())
    assert len(scores) == 6 * 2 * 288
    assert "<svg" in (workdir / "out" / "example-s3.html").read_text()

"""Batch jobs: spec validation, ``adp run`` in a subprocess, safe outputs, worker loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from adp.errors import DataError, OutputExistsError, SpecError
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec

ADP = [sys.executable, "-m", "adp.cli"]


def _lake(folder: Path, files: int = 4, rows: int = 500, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(files):
        df = pd.DataFrame(rng.normal(size=(rows, 3)), columns=["a", "b", "c"])
        df["sensor_id"] = f"s{i}"
        df["seq"] = np.arange(rows)
        df["label"] = (rng.random(rows) < 0.02).astype("int64")
        for row in np.flatnonzero(df["label"].to_numpy()):  # a jump in one random channel
            df.iloc[row, rng.integers(3)] += rng.choice([-1, 1]) * rng.uniform(6, 10)
        df.to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _spec(lake: Path, out: Path, **overrides) -> dict:
    spec = {
        "name": "test-job",
        "source": {"uri": str(lake), "exclude": ["label"], "key": ["sensor_id", "seq"]},
        "detector": {"name": "ecod", "params": {}},
        "threshold": {"contamination": 0.05},
        "output": {"uri": str(out)},
        "evaluate": {"label": "label"},
    }
    spec.update(overrides)
    return spec


# --- spec validation --------------------------------------------------------------------


def test_unknown_key_is_named_with_its_path(tmp_path) -> None:
    data = _spec(tmp_path, tmp_path / "o")
    data["detector"] = {"name": "hbos", "paramz": {}}
    with pytest.raises(SpecError, match=r"detector\.paramz: unknown field"):
        JobSpec.from_dict(data)


def test_wrong_type_is_named_with_its_path(tmp_path) -> None:
    data = _spec(tmp_path, tmp_path / "o", fit={"sample_rows": "many"})
    with pytest.raises(SpecError, match=r"fit\.sample_rows"):
        JobSpec.from_dict(data)


def test_threshold_needs_one_rule(tmp_path) -> None:
    data = _spec(tmp_path, tmp_path / "o", threshold={"contamination": 0.1, "score": 3})
    with pytest.raises(SpecError, match="threshold"):
        JobSpec.from_dict(data)


def test_yaml_is_loaded_safely(tmp_path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("source: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        JobSpec.from_yaml(path)


def test_example_spec_from_the_issue_validates(tmp_path) -> None:
    text = """
source:    {uri: data/lake/, format: parquet, features: [f0, f1], exclude: [label],
            key: [sensor_id, ts]}
detector:  {name: isolation_forest, params: {n_estimators: 100, random_state: 0}}
fit:       {sample_rows: 100000}
threshold: {contamination: 0.05}
output:    {uri: out/scores/, format: parquet}
cluster:   {address: null, n_workers: 2, threads_per_worker: 1}
"""
    path = tmp_path / "job.yaml"
    path.write_text(text)
    spec = JobSpec.from_yaml(path)
    assert spec.source.features == ["f0", "f1"]
    assert spec.detector is not None and spec.detector.params["n_estimators"] == 100


# --- running jobs -----------------------------------------------------------------------


def test_job_writes_every_row_once(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "out" / "scores"
    result = run_job(JobSpec.from_dict(_spec(lake, out)), client=client, show_progress=False)
    written = pd.read_parquet(out)
    assert len(written) == result.rows == 2000
    assert not written.duplicated(["sensor_id", "seq"]).any()
    assert set(written.columns) == {"sensor_id", "seq", "score", "is_anomaly"}
    assert written["is_anomaly"].sum() == result.anomalies == 100
    e = result.evaluation
    assert e is not None
    assert e.true_positives + e.false_positives == result.anomalies
    labels = pd.concat(pd.read_parquet(p) for p in lake.glob("*.parquet"))["label"]
    assert e.true_positives + e.false_negatives == labels.sum()
    assert e.recall > 0.8
    assert (out / "_adp_manifest.json").exists()
    assert not [p for p in out.parent.iterdir() if "staging" in p.name]


def test_existing_output_is_refused_before_any_work(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    out.mkdir()
    (out / "precious.parquet").write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="overwrite"):
        run_job(JobSpec.from_dict(_spec(lake, out)), client=client, show_progress=False)
    assert (out / "precious.parquet").read_bytes() == b"keep me"


def test_overwrite_replaces_the_dataset(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    spec = _spec(lake, out)
    first = run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    manifest = json.loads((out / "_adp_manifest.json").read_text())
    spec["output"]["mode"] = "overwrite"
    spec["threshold"] = {"contamination": 0.1}
    second = run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    replaced = json.loads((out / "_adp_manifest.json").read_text())
    assert replaced["created"] != manifest["created"]
    assert second.anomalies > first.anomalies
    assert len(pd.read_parquet(out)) == 2000
    assert int(pd.read_parquet(out)["is_anomaly"].sum()) == second.anomalies


def test_overwrite_never_replaces_files_adp_did_not_write(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    out.mkdir()
    (out / "old.parquet").write_bytes(b"old")
    spec = _spec(lake, out)
    spec["output"]["mode"] = "overwrite"
    with pytest.raises(OutputExistsError, match="old.parquet"):
        run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    assert (out / "old.parquet").read_bytes() == b"old"


def test_failed_job_leaves_nothing_half_written(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    bad = pd.read_parquet(lake / "part-2.parquet")
    bad.loc[10, "b"] = np.nan
    bad.to_parquet(lake / "part-2.parquet", index=False)
    out = tmp_path / "out" / "scores"
    spec = _spec(lake, out, fit={"sample_rows": 100})  # the sample may miss the NaN
    with pytest.raises(DataError, match=r"'b': 1"):
        run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    assert not out.exists()
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert not leftovers  # no staging folder left either


@pytest.mark.slow
def test_adp_run_cli_succeeds_and_prints_the_summary(client, tmp_path) -> None:
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    job = tmp_path / "job.yaml"
    spec = _spec(lake, out, cluster={"n_workers": 2, "threads_per_worker": 1})
    job.write_text(yaml.safe_dump(spec))
    proc = subprocess.run(
        [
            *ADP,
            "run",
            str(job),
            "--scheduler",
            client.scheduler.address,
            "--report",
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    for word in ("rows", "2,000", "partitions", "workers", "anomalies flagged", "precision"):
        assert word in proc.stdout
    assert len(pd.read_parquet(out)) == 2000
    page = (tmp_path / "r.html").read_text()
    assert "<svg" in page and "Top" in page


@pytest.mark.slow
def test_adp_run_cli_reports_spec_errors(tmp_path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"source": {"uri": "x", "colour": "red"}}))
    proc = subprocess.run([*ADP, "run", str(job)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "source.colour: unknown field" in proc.stderr


def test_job_writes_a_database_table_idempotently(client, tmp_path) -> None:
    import sqlalchemy as sa

    lake = _lake(tmp_path / "lake")
    url = f"sqlite:///{tmp_path / 'scores.db'}"
    spec = _spec(lake, tmp_path / "unused")
    spec["output"] = {"uri": url, "table": "scores", "mode": "upsert"}
    for _ in range(2):  # a re-run neither duplicates nor loses rows
        run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT sensor_id, seq, is_anomaly FROM scores")).all()
    engine.dispose()
    assert len(rows) == 2000 == len({(r[0], r[1]) for r in rows})
    assert sum(r[2] for r in rows) == 100
    spec["output"]["mode"] = "error"
    with pytest.raises(OutputExistsError, match="upsert"):
        run_job(JobSpec.from_dict(spec), client=client, show_progress=False)


def test_job_is_audited_and_the_chain_verifies(client, tmp_path) -> None:
    from adp.observe.audit import AuditLog

    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", state_dir=tmp_path)
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    run_job(JobSpec.from_dict(_spec(lake, out)), client=client, show_progress=False, audit_log=log)
    records = log.records()
    job_ids = {r.job_id for r in records if r.event_type == "job.submit"}
    assert len(job_ids) == 1
    mine = [(r.event_type, r.outcome) for r in records if r.job_id in job_ids]
    assert ("job.submit", "success") in mine
    assert ("job.run", "started") in mine and ("job.run", "success") in mine
    read = next(r for r in records if r.event_type == "source.read")
    assert read.resource == str(lake) and json.loads(read.details or "{}")["rows"] == 2000
    assert any(r.event_type == "output.write" and r.resource == str(out) for r in records)
    assert log.verify().ok


@pytest.mark.slow
def test_job_does_not_run_when_its_audit_record_cannot_be_written(client, tmp_path) -> None:
    import sqlite3

    from adp.errors import AuditError
    from adp.observe.audit import AuditLog

    db = tmp_path / "audit.db"
    log = AuditLog(f"sqlite:///{db}", state_dir=tmp_path)
    with sqlite3.connect(db) as conn:  # every further append fails, as on a full disk
        conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON adp_audit "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    lake = _lake(tmp_path / "lake")
    out = tmp_path / "scores"
    with pytest.raises(AuditError):
        run_job(
            JobSpec.from_dict(_spec(lake, out)), client=client, show_progress=False, audit_log=log
        )
    assert not out.exists()

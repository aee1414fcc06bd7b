"""``adp retention apply``: expired job outputs deleted only through ADP's manifests, every
deletion audited, old audit records archived, and a dry run that changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from service_site import job_spec, write_lake

from adp.io.outputs import MANIFEST, VERSIONS
from adp.io.parts import make_folder, part_path, write_part
from adp.io.sinks import record_table_manifest, table_exists
from adp.io.staging import Staging, manifest_for
from adp.observe.audit import AuditLog
from adp.service.retention import apply_retention, names_job
from adp.service.retention_cli import retention
from adp.service.store import JobRecord, JobStore

DAYS = 30


@pytest.fixture
def state(state_dir: Path) -> Iterator[Path]:
    """The state directory, with results kept 30 days and the audit trail kept forever."""
    with dask.config.set(
        {
            "adp.audit.url": None,
            "adp.service.database": None,
            "adp.retention.results-days": DAYS,
            "adp.retention.audit-days": None,
        }
    ):
        yield state_dir


@pytest.fixture
def store(state: Path) -> Iterator[JobStore]:
    """The service's job store, where the service keeps it."""
    jobs = JobStore(f"sqlite:///{state / 'service.db'}", state_dir=state)
    yield jobs
    jobs.close()


def _commit_folder(
    out: Path | str, name: str, options: dict[str, Any] | None = None, **fields: Any
) -> None:
    """Commit a one-file Parquet dataset at ``out`` the way a job's sink does."""
    staging = Staging(str(out), "overwrite", options)
    with staging.session():
        folder = staging.path("final")
        make_folder(folder, options)
        frame = pd.DataFrame({"id": np.arange(5), "score": np.linspace(0, 1, 5)})
        written = write_part(frame, part_path(folder, 0), options)
        created = pd.Timestamp.now(tz="UTC").isoformat()
        staging.commit(folder, manifest_for([written], job=name, created=created, **fields))


def _job(
    store: JobStore,
    state: Path,
    out: Path | None,
    name: str = "svc",
    *,
    commit: bool = True,
    output: dict[str, Any] | None = None,
    end: str = "succeeded",
) -> JobRecord:
    """A job row run to ``end``, its output committed during its run, and its report."""
    spec = job_spec(state, out or state, name=name)
    spec["output"] = output or {"uri": str(out)}
    shown = str(spec["output"]["uri"]).replace("secret", "***")
    record = store.create(
        name=name, owner="alice", roles=["analyst"], spec=spec, spec_shown=spec, output=shown
    )
    claimed = store.claim()
    assert claimed is not None and claimed.id == record.id
    if commit and out is not None:
        _commit_folder(out, name)
    reports = state / "service" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    report = reports / f"{record.id}.html"
    report.write_text("<html>report</html>")
    return store.finish(record.id, end, summary={"rows": 5}, report=str(report))


def _between(before: JobRecord, after: JobRecord) -> dt.datetime:
    """A ``now`` for which ``before`` finished more than 30 days ago and ``after`` did not."""
    assert before.finished is not None and after.finished is not None
    assert after.finished > before.finished
    return before.finished + (after.finished - before.finished) / 2 + dt.timedelta(days=DAYS)


def _retention_records(job_id: str | None = None) -> list[Any]:
    with AuditLog() as log:
        return [r for r in log.records(job_id=job_id) if r.event_type.startswith("retention.")]


def test_an_expired_output_written_by_adp_is_deleted_and_audited(
    state: Path, store: JobStore, tmp_path: Path
) -> None:
    old = _job(store, state, tmp_path / "out" / "old")
    recent = _job(store, state, tmp_path / "out" / "recent")
    report = apply_retention(now=_between(old, recent), identity="ops")

    assert report.jobs == 1
    by_kind = {i.kind: i for i in report.items}
    assert by_kind["folder"].action == "deleted" and by_kind["report"].action == "deleted"
    assert not (tmp_path / "out" / "old").exists()
    assert not Path(str(old.report)).exists()
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "recent"]  # nothing aside
    # the recent job is untouched
    assert (tmp_path / "out" / "recent" / MANIFEST).exists() and Path(str(recent.report)).exists()
    assert store.get(recent.id).output is not None
    # the old job's row forgets both, and says why in its log
    row = store.get(old.id)
    assert row.output is None and row.report is None and row.state == "succeeded"
    assert "retention (30 days)" in store.logs(old.id)[-1][1]
    # every deletion audited before and after, by the caller, naming the output
    records = _retention_records(old.id)
    assert [(r.resource, r.outcome) for r in records] == [
        (str(tmp_path / "out" / "old"), "started"),
        (str(tmp_path / "out" / "old"), "success"),
        (str(old.report), "started"),
        (str(old.report), "success"),
    ]
    assert {r.identity for r in records} == {"ops"}
    assert records[0].details_data()["kind"] == "folder"
    # done once: a second run finds nothing more to do and records nothing
    again = apply_retention(now=_between(old, recent), identity="ops")
    assert again.jobs == 0 and again.items == []
    assert len(_retention_records()) == 4


def test_foreign_files_and_other_jobs_outputs_are_left_and_reported(
    state: Path, store: JobStore, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    foreign = _job(store, state, out / "foreign")
    (out / "foreign" / "notes.txt").write_text("mine, not ADP's")
    plain = _job(store, state, out / "plain", commit=False)
    (out / "plain").mkdir(parents=True)
    (out / "plain" / "data.csv").write_text("a,b\n1,2\n")
    replaced = _job(store, state, out / "shared", name="daily")
    renamed = _job(store, state, out / "byname", name="other-name")
    _commit_folder(out / "byname", "other-name", job_id="someone-else")
    later = _job(store, state, out / "later")
    _commit_folder(out / "shared", "daily")  # the same job name, committed after the run
    report = apply_retention(now=_between(renamed, later))

    folders = {i.job_id: i for i in report.items if i.kind == "folder"}
    assert folders[foreign.id].action == "left"
    assert "1 file(s) its manifest does not list" in str(folders[foreign.id].reason)
    assert folders[plain.id].action == "left" and "no ADP manifest" in str(folders[plain.id].reason)
    assert folders[replaced.id].action == "replaced"
    assert "names another commit (job daily, created" in str(folders[replaced.id].reason)
    assert folders[renamed.id].action == "replaced"
    assert "job_id someone-else" in str(folders[renamed.id].reason)
    for name in ("foreign", "plain", "shared", "byname", "later"):
        assert (out / name).is_dir(), name
    assert (out / "foreign" / "notes.txt").exists() and (out / "plain" / "data.csv").exists()
    # no deletion of an output happened, so none was audited; reports were deleted
    started = [r for r in _retention_records() if r.outcome == "started"]
    assert {r.details_data()["kind"] for r in started} == {"report"}
    # a folder that is left keeps its row's output (reported again next time), one that
    # another commit replaced is forgotten
    assert store.get(foreign.id).output is not None and store.get(plain.id).output is not None
    assert store.get(replaced.id).output is None and store.get(renamed.id).output is None


def test_an_expired_object_store_output_goes_manifest_first(
    state: Path, store: JobStore, tmp_path: Path, s3: Any
) -> None:
    bucket, options = s3.bucket(), s3.options()
    fs = s3.fs()
    uri = f"s3://{bucket}/team/scores"
    record = store.create(
        name="svc",
        owner="alice",
        roles=[],
        spec={"output": {"uri": uri, "storage_options": options}},
        spec_shown={},
        output=uri,
    )
    store.claim()
    _commit_folder(uri, "svc", options)
    old = store.finish(record.id, "succeeded")
    fs.pipe_file(f"{bucket}/team/scores/{VERSIONS}/running-job/part.00000.parquet", b"x")
    fs.pipe_file(f"{bucket}/team/other/keep.csv", b"a\n1\n")
    recent = _job(store, state, tmp_path / "recent")
    report = apply_retention(now=_between(old, recent))
    assert [(i.kind, i.resource, i.action) for i in report.items] == [("folder", uri, "deleted")]
    fs.invalidate_cache()
    left = sorted(fs.find(f"{bucket}/team"))
    # the manifest, its files and its version are gone; another job's staging is not
    assert left == [
        f"{bucket}/team/other/keep.csv",
        f"{bucket}/team/scores/{VERSIONS}/running-job/part.00000.parquet",
    ]


def test_a_manifest_names_a_job_by_id_or_by_name_within_its_run(
    state: Path, store: JobStore, tmp_path: Path
) -> None:
    record = _job(store, state, tmp_path / "o")
    assert record.started is not None and record.finished is not None
    during = (record.started + (record.finished - record.started) / 2).isoformat()
    assert names_job({"job": "svc", "created": during}, record)
    assert not names_job({"job": "other", "created": during}, record)
    assert not names_job({"job": "svc", "created": record.finished.isoformat() + "1"}, record)
    after = (record.finished + dt.timedelta(seconds=1)).isoformat()
    assert not names_job({"job": "svc", "created": after}, record)
    assert not names_job({"job": "svc"}, record)
    assert names_job({"job": "x", "job_id": record.id}, record)
    assert not names_job({"job": "svc", "job_id": "another", "created": during}, record)


def test_a_dry_run_changes_and_records_nothing(
    state: Path, store: JobStore, tmp_path: Path
) -> None:
    old = _job(store, state, tmp_path / "out" / "old")
    recent = _job(store, state, tmp_path / "out" / "recent")
    with AuditLog() as log:
        before = [r.seq for r in log.records()]
    result = CliRunner().invoke(retention, ["apply", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["jobs"] == 0  # nothing is 30 days old today
    report = apply_retention(now=_between(old, recent), dry_run=True)
    assert [(i.kind, i.action) for i in report.items] == [
        ("folder", "would delete"),
        ("report", "would delete"),
    ]
    assert "dry run: nothing was changed" in report.render()
    assert (tmp_path / "out" / "old" / MANIFEST).exists() and Path(str(old.report)).exists()
    assert store.get(old.id).output is not None and store.get(old.id).report is not None
    with AuditLog() as log:
        assert [r.seq for r in log.records()] == before


def test_failed_jobs_and_unset_retention_keep_everything(
    state: Path, store: JobStore, tmp_path: Path
) -> None:
    failed = _job(store, state, tmp_path / "out" / "failed", end="failed")
    recent = _job(store, state, tmp_path / "out" / "recent")
    assert apply_retention(now=_between(failed, recent)).jobs == 0
    with dask.config.set({"adp.retention.results-days": None}):
        kept = apply_retention(now=_between(failed, recent) + dt.timedelta(days=999))
    assert kept.jobs == 0 and kept.audit is not None and kept.audit.moved == 0
    assert "kept (adp.retention.results-days is not set)" in kept.render()
    assert (tmp_path / "out" / "failed" / MANIFEST).exists()


def test_table_outputs_are_dropped_only_when_their_manifest_names_the_job(
    state: Path, store: JobStore, tmp_path: Path, pg_url: str, table_name: str
) -> None:
    # a password in the URL (PostgreSQL here trusts any): never in the audit trail
    url = pg_url.replace("postgres@", "postgres:secret@")
    frame = pd.DataFrame({"id": [1, 2], "score": [0.1, 0.9]})
    names = {k: f"{table_name}_{k}" for k in ("mine", "merged", "theirs")}
    engine = sa.create_engine(pg_url)
    jobs = {}
    for kind, table in names.items():
        mode = "upsert" if kind == "merged" else "overwrite"
        output = {"uri": url, "table": table, "mode": mode}
        record = store.create(
            name="tbl", owner="alice", roles=[], spec={"output": output}, spec_shown={}, output=url
        )
        store.claim()
        frame.to_sql(table, engine, index=False)
        owner = {"job_id": "not-this-one"} if kind == "theirs" else {"job_id": record.id}
        record_table_manifest(url, table, manifest_for([], job="tbl", table=table, **owner))
        jobs[kind] = store.finish(record.id, "succeeded")
    engine.dispose()
    later = _job(store, state, tmp_path / "later")
    report = apply_retention(now=_between(jobs["theirs"], later), identity="ops")

    tables = {i.job_id: i for i in report.items if i.kind == "table"}
    assert tables[jobs["mine"].id].action == "deleted"
    assert tables[jobs["merged"].id].action == "left"
    assert "upsert" in str(tables[jobs["merged"].id].reason)
    assert tables[jobs["theirs"].id].action == "replaced"
    assert not table_exists(pg_url, names["mine"])
    assert table_exists(pg_url, names["merged"]) and table_exists(pg_url, names["theirs"])
    records = _retention_records(jobs["mine"].id)
    assert [r.outcome for r in records] == ["started", "success"]
    assert "secret" not in json.dumps([r.to_dict() for r in records])
    assert records[0].resource.endswith(f"#{names['mine']}") and "***" in records[0].resource


@pytest.mark.slow
def test_a_real_jobs_output_expires_and_the_audit_trail_is_archived(
    state: Path, store: JobStore, tmp_path: Path, client: Any
) -> None:
    from adp.service.driver import JobDriver
    from adp.service.retention_cli import retention as command

    lake = write_lake(tmp_path / "lake", parts=2, rows=200)
    reports = state / "service" / "reports"
    reports.mkdir(parents=True)
    spec = job_spec(lake, tmp_path / "out" / "first", name="first")
    created = store.create(
        name="first",
        owner="alice",
        roles=["analyst"],
        spec=spec,
        spec_shown=spec,
        output=str(tmp_path / "out" / "first"),
    )
    claimed = store.claim()
    assert claimed is not None and claimed.id == created.id
    with AuditLog() as log:  # the service's driver runs it, as `adp serve` would
        driver = JobDriver(store, client.scheduler.address, log, max_running=1, reports_dir=reports)
        first = driver.run(claimed)
    assert first.state == "succeeded", first.error
    assert Path(str(first.report)).exists()
    second = _job(store, state, tmp_path / "out" / "second", name="second")
    now = _between(first, second)
    with dask.config.set({"adp.retention.audit-days": DAYS}):
        out = CliRunner().invoke(command, ["apply", "--json"])
        # the command counts from today: nothing is due yet (the function takes a time)
        assert out.exit_code == 0, out.output
        assert json.loads(out.output)["audit"]["moved"] == 0
        report = apply_retention(now=now, identity="ops")
    assert [(i.kind, i.action) for i in report.items] == [
        ("folder", "deleted"),
        ("report", "deleted"),
    ]
    assert not (tmp_path / "out" / "first").exists() and (tmp_path / "out" / "second").is_dir()
    assert report.audit is not None and report.audit.moved > 0
    # the first job's records are archived; what remains (the second job's) verifies
    with AuditLog() as log:
        remaining = log.records()
        assert remaining[0].seq == report.audit.through_seq + 1
        assert log.verify().ok
    from adp.observe.cli import audit

    verified = CliRunner().invoke(audit, ["verify"])
    assert verified.exit_code == 0, verified.output

"""Archiving old audit records: the rest still verifies, and only through ADP's archive step.

Each test runs on SQLite and on the machine's PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from observe_helpers import ON_CI, PG_URL

from adp.errors import AuditError
from adp.observe.audit import AuditLog
from adp.observe.cli import audit
from adp.observe.retention import (
    ARCHIVE_FILE,
    archive_audit,
    archive_marks,
    archive_table_name,
    verify_archive,
)


def _pg_or_skip() -> None:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        if ON_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    finally:
        engine.dispose()


def _drop_pg(table: str) -> None:
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        for name in (table, archive_table_name(table)):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {name}_append_only()")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[AuditLog]:
    """An audit log on SQLite (in the state directory) or PostgreSQL (a unique table)."""
    if request.param == "sqlite":
        audit_log = AuditLog()
        yield audit_log
        audit_log.close()
        return
    _pg_or_skip()
    table = f"adp_audit_r{uuid.uuid4().hex[:12]}"
    audit_log = AuditLog(PG_URL, table=table)
    try:
        yield audit_log
    finally:
        audit_log.close()
        _drop_pg(table)


def _sql(log: AuditLog, *statements: str) -> None:
    """Change the audit table behind ADP's back (its append-only triggers lifted)."""
    engine = sa.create_engine(log.store.engine.url)
    name = log.table_name
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_update")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}_no_delete")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {name} DISABLE TRIGGER USER")
        for statement in statements:
            conn.exec_driver_sql(statement.format(table=name, archive=f"{name}_archive"))
    engine.dispose()


def _count(log: AuditLog, table: str) -> int:
    with log.store.engine.connect() as conn:
        if not sa.inspect(conn).has_table(table):
            return 0
        return int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())


def _old_and_new(log: AuditLog, old: int = 5, new: int = 3) -> dt.datetime:
    """Append ``old`` then ``new`` records; return a ``now`` for which, with ``days=1``,
    exactly the first ``old`` are due."""
    records = [log.append("test.event", action="act", details={"i": i}) for i in range(old + new)]
    last_old = dt.datetime.fromisoformat(records[old - 1].time)
    first_new = dt.datetime.fromisoformat(records[old].time)
    assert first_new > last_old
    cutoff = last_old + (first_new - last_old) / 2
    return cutoff + dt.timedelta(days=1)


def test_archive_moves_the_old_prefix_and_the_rest_verifies(log: AuditLog) -> None:
    now = _old_and_new(log)
    done = archive_audit(log, days=1, now=now, identity="alice")
    assert (done.moved, done.first_seq, done.through_seq) == (5, 1, 5)
    archive = archive_table_name(log.table_name)
    assert done.archive_table == archive and _count(log, archive) == 5
    remaining = log.records()
    assert [r.seq for r in remaining] == [6, 7, 8, 9, 10]
    started, success = remaining[-2:]
    assert (started.event_type, started.outcome, started.identity) == (
        "retention.audit",
        "started",
        "alice",
    )
    assert started.details_data()["records"] == 5
    assert started.details_data()["through_seq"] == 5
    assert success.outcome == "success" and done.record_seq == started.seq
    # the first remaining record links to the last archived one, which a signed mark names
    marks = archive_marks(log.checkpoints)
    assert set(marks) == {5} and remaining[0].prev_hash == marks[5]
    result = log.verify()
    assert result.ok, result.reason
    assert result.records_checked == 5 and result.head_seq == 10
    assert verify_archive(log).ok
    # and appending goes on from the same head
    log.append("after", action="act")
    assert log.verify().ok


def test_adp_audit_verify_passes_after_archiving(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    result = CliRunner().invoke(audit, ["verify", "--url", log.url, "--table", log.table_name])
    assert result.exit_code == 0, result.output
    assert "OK: 5 audit records verified" in result.output


def test_a_changed_remaining_record_fails_verification(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    _sql(log, "UPDATE {table} SET action = 'other' WHERE seq = 7")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 7
    assert "does not match its hash" in (result.reason or "")


def test_a_rewritten_first_remaining_record_fails_verification(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    _sql(log, f"UPDATE {{table}} SET prev_hash = '{'1' * 64}' WHERE seq = 6")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert "archived record 5" in (result.reason or "")


def test_deleting_the_oldest_remaining_records_directly_fails(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    _sql(log, "DELETE FROM {table} WHERE seq <= 7")
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 6
    assert "records 6..7 are missing" in (result.reason or "")
    assert "archived records only up to 5" in (result.reason or "")


def test_deleting_the_oldest_records_without_the_archive_step_fails(log: AuditLog) -> None:
    _old_and_new(log)
    # even moved into the archive table by hand: no signed mark vouches for the boundary
    _sql(
        log,
        "CREATE TABLE {archive} AS SELECT * FROM {table} WHERE seq <= 3",
        "DELETE FROM {table} WHERE seq <= 3",
    )
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 1
    assert "record 1 is missing" in (result.reason or "")


def test_a_forged_or_lost_archive_mark_vouches_for_nothing(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    marks_file = log.checkpoints.state_dir / ARCHIVE_FILE
    data = json.loads(marks_file.read_text())
    (entry,) = data["marks"][log.log_id].values()
    good = dict(entry)
    entry["seq"] = 6  # moved by one record: the signature no longer matches
    marks_file.write_text(json.dumps(data))
    assert archive_marks(log.checkpoints) == {}
    assert not log.verify().ok
    # an intent or checkpoint signature does not pass for a mark either
    checkpoint = json.loads((log.checkpoints.path).read_text())["logs"][log.log_id]
    data["marks"][log.log_id] = {"5": {**good, "sig": checkpoint["sig"]}}
    marks_file.write_text(json.dumps(data))
    assert archive_marks(log.checkpoints) == {}
    marks_file.unlink()
    result = log.verify()
    assert not result.ok and result.first_bad_seq == 1


def test_archiving_twice_is_idempotent(log: AuditLog) -> None:
    now = _old_and_new(log)
    first = archive_audit(log, days=1, now=now)
    before = [r.to_dict() for r in log.records()]
    again = archive_audit(log, days=1, now=now)
    assert first.moved == 5 and again.moved == 0 and again.through_seq is None
    assert [r.to_dict() for r in log.records()] == before  # nothing moved, nothing recorded
    assert _count(log, archive_table_name(log.table_name)) == 5
    assert log.verify().ok and verify_archive(log).ok


def test_a_later_run_moves_the_next_prefix(log: AuditLog) -> None:
    now = _old_and_new(log)
    archive_audit(log, days=1, now=now)
    later = archive_audit(log, days=1, now=now + dt.timedelta(days=30))
    head = log.records()[-1].seq
    # everything up to the first record of the second run moved; the run's records stay
    assert later.first_seq == 6 and later.through_seq == head - 2 and later.moved == head - 7
    assert set(archive_marks(log.checkpoints)) == {5, later.through_seq}
    assert log.verify().ok and verify_archive(log).ok
    assert _count(log, archive_table_name(log.table_name)) == later.through_seq


def test_a_changed_archived_record_fails_the_archive_check(log: AuditLog) -> None:
    archive_audit(log, days=1, now=_old_and_new(log))
    engine = sa.create_engine(log.store.engine.url)
    archive = archive_table_name(log.table_name)
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER {archive}_no_update")
        else:
            conn.exec_driver_sql(f"ALTER TABLE {archive} DISABLE TRIGGER USER")
        conn.exec_driver_sql(f"UPDATE {archive} SET identity = 'mallory' WHERE seq = 2")
    engine.dispose()
    assert log.verify().ok  # what remains is intact
    result = verify_archive(log)
    assert not result.ok and result.first_bad_seq == 2


def test_dry_run_and_unset_retention_change_nothing(log: AuditLog) -> None:
    now = _old_and_new(log)
    planned = archive_audit(log, days=1, now=now, dry_run=True)
    assert (planned.moved, planned.first_seq, planned.through_seq) == (5, 1, 5)
    assert planned.dry_run and planned.record_seq is None
    off = archive_audit(log, now=now)  # adp.retention.audit-days is null
    assert off.moved == 0 and off.cutoff is None
    assert [r.seq for r in log.records()] == list(range(1, 9))
    assert _count(log, archive_table_name(log.table_name)) == 0
    assert archive_marks(log.checkpoints) == {}


def test_a_log_that_does_not_verify_is_not_archived(log: AuditLog) -> None:
    now = _old_and_new(log)
    _sql(log, "UPDATE {table} SET action = 'other' WHERE seq = 2")
    with pytest.raises(AuditError, match=r"does not verify \(at seq 2"):
        archive_audit(log, days=1, now=now)
    assert [r.seq for r in log.records()] == list(range(1, 9))
    assert archive_marks(log.checkpoints) == {}

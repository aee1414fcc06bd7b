"""The audit trail: chain, checkpoints, tamper detection, concurrency, ``audited``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from observe_helpers import PG_URL, sqlite_path, tamper

from adp.errors import AccessDeniedError, AuditError, AuditVerificationError, ConfigError
from adp.observe.audit import GENESIS_HASH, AuditLog, audited, record_hash

COLUMNS = (
    'event_type, time, "where", source, outcome, identity, resource, action, reason, '
    "job_id, details, prev_hash, hash"
)


def fill(log: AuditLog, n: int = 8) -> None:
    for i in range(n):
        log.append(
            "job.run",
            action="score",
            resource=f"s3://lake/table-{i}",
            job_id=f"job-{i % 2}",
            details={"rows": 1000 + i},
            source="api",
        )


def check_bad(log: AuditLog, seq: int, words: str) -> None:
    result = log.verify()
    assert not result.ok, result
    assert result.first_bad_seq == seq, result
    assert words in result.reason, result
    with pytest.raises(AuditVerificationError, match=f"at seq {seq}: "):
        result.raise_if_failed()


def test_append_builds_a_chain(log: AuditLog) -> None:
    fill(log, 3)
    records = log.records()
    assert [r.seq for r in records] == [1, 2, 3]
    assert records[0].prev_hash == GENESIS_HASH
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    first = records[0]
    assert first.outcome == "success" and first.source == "api" and first.identity
    assert first.where.endswith(f"pid:{os.getpid()}")
    assert datetime.fromisoformat(first.time).tzinfo is not None
    assert first.details_data() == {"rows": 1000}
    assert record_hash(first.to_dict()) == first.hash
    result = log.verify()
    assert result.ok and result.records_checked == 3 and result.checkpoint_seq == 3
    assert result.unanchored == 0
    result.raise_if_failed()


def test_records_filter_by_job_and_time(log: AuditLog) -> None:
    fill(log, 6)
    assert [r.seq for r in log.records(job_id="job-1")] == [2, 4, 6]
    assert len(log.records(since="2000-01-01T00:00:00Z")) == 6
    future = datetime.now(UTC) + timedelta(days=1)
    assert log.records(since=future) == []
    assert len(log.records(limit=2)) == 2
    with pytest.raises(ConfigError, match="ISO 8601"):
        log.records(since="yesterday")


def test_the_table_is_append_only(log: AuditLog) -> None:
    import sqlite3

    fill(log, 2)
    con = sqlite3.connect(sqlite_path(log))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE adp_audit SET action = 'x' WHERE seq = 1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM adp_audit WHERE seq = 2")
    con.close()


def test_invalid_arguments_are_refused(state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="audit table name .* is not a plain SQL identifier"):
        AuditLog(table="adp_audit; DROP TABLE x")
    with pytest.raises(ConfigError, match="SQLite file"):
        AuditLog("sqlite://")
    with AuditLog() as log:
        with pytest.raises(ConfigError, match="outcome"):
            log.append("x", action="y", outcome="maybe")
        with pytest.raises(ConfigError, match="action"):
            log.append("x", action="")


def test_signing_key_file_is_private(log: AuditLog, state_dir: Path) -> None:
    fill(log, 1)
    assert (state_dir / "audit.ed25519").stat().st_mode & 0o777 == 0o600
    assert b"BEGIN PUBLIC KEY" in (state_dir / "audit.ed25519.pub").read_bytes()
    entry = json.loads((state_dir / "audit.checkpoint").read_text())["logs"][log.log_id]
    assert entry["seq"] == 1 and len(entry["sig"]) == 88  # a base64 Ed25519 signature


# -- tampering, with SQL straight at the database -----------------------------------------
def test_changed_byte_in_one_field(log: AuditLog) -> None:
    fill(log)
    tamper(log, "UPDATE adp_audit SET resource = 's3://lake/table-X' WHERE seq = 4")
    check_bad(log, 4, "does not match its hash")


def test_changed_byte_in_details(log: AuditLog) -> None:
    fill(log)
    tamper(log, "UPDATE adp_audit SET details = replace(details, '1005', '1006') WHERE seq = 6")
    check_bad(log, 6, "does not match its hash")


def test_changed_prev_hash(log: AuditLog) -> None:
    fill(log)
    flip = "CASE WHEN substr(prev_hash, 1, 1) = '0' THEN '1' ELSE '0' END"
    tamper(log, f"UPDATE adp_audit SET prev_hash = {flip} || substr(prev_hash, 2) WHERE seq = 5")
    check_bad(log, 5, "does not link")


def test_deleted_middle_record(log: AuditLog) -> None:
    fill(log)
    tamper(log, "DELETE FROM adp_audit WHERE seq = 4")
    check_bad(log, 4, "record 4 is missing")


def test_deleted_record_and_renumbered(log: AuditLog) -> None:
    fill(log)
    tamper(
        log,
        "DELETE FROM adp_audit WHERE seq = 4",
        "UPDATE adp_audit SET seq = seq + 1000 WHERE seq > 4",
        "UPDATE adp_audit SET seq = seq - 1001 WHERE seq > 1000",
    )
    check_bad(log, 4, "record 4")


@pytest.mark.parametrize(("a", "b"), [(3, 6), (4, 5)])
def test_swapped_pair(log: AuditLog, a: int, b: int) -> None:
    fill(log)
    tamper(
        log,
        f"CREATE TEMP TABLE saved AS SELECT * FROM adp_audit WHERE seq IN ({a}, {b})",
        f"UPDATE adp_audit SET ({COLUMNS}) = (SELECT {COLUMNS} FROM saved "
        f"WHERE saved.seq = {a + b} - adp_audit.seq) WHERE seq IN ({a}, {b})",
    )
    swapped = {r.seq: r for r in log.records()}
    assert swapped[a].resource.endswith(f"-{b - 1}")  # the rows really did swap
    check_bad(log, a, f"record {a}")


def test_inserted_record(log: AuditLog) -> None:
    """A forged record with a correct SHA-256, slid in by renumbering the rest."""
    fill(log)
    prev = log.records()[2]  # seq 3
    forged = {
        "seq": 4,
        "event_type": "job.run",
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "where": "attacker",
        "source": "api",
        "outcome": "success",
        "identity": "mallory",
        "resource": "s3://lake/secret",
        "action": "export",
        "reason": None,
        "job_id": None,
        "details": None,
        "prev_hash": prev.hash,
    }
    forged["hash"] = record_hash(forged)
    names = ", ".join(f'"{k}"' for k in forged)
    values = ", ".join(f":{k}" for k in forged)
    tamper(
        log,
        "UPDATE adp_audit SET seq = seq + 1000 WHERE seq >= 4",
        "UPDATE adp_audit SET seq = seq - 999 WHERE seq >= 1000",
    )
    engine = sa.create_engine(log.url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO adp_audit ({names}) VALUES ({values})"), forged)
    engine.dispose()
    check_bad(log, 4, "record 4 was inserted")


def test_appended_forgery_is_unanchored(log: AuditLog) -> None:
    """A forged record at the end, correctly chained, is outside every signed checkpoint."""
    fill(log, 3)
    head = log.records()[-1]
    forged = dict(head.to_dict(), seq=4, prev_hash=head.hash, identity="mallory")
    forged["hash"] = record_hash(forged)
    cols = ", ".join(f'"{k}"' for k in forged)
    engine = sa.create_engine(log.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"INSERT INTO adp_audit ({cols}) VALUES ({', '.join(':' + k for k in forged)})"
            ),
            forged,
        )
    engine.dispose()
    lenient = log.verify(strict=False)
    assert lenient.ok and lenient.unanchored == 1 and lenient.checkpoint_seq == 3
    strict = log.verify()  # strict is the default
    assert not strict.ok and strict.first_bad_seq == 4
    assert "not covered by a signed checkpoint" in strict.reason
    # no laundering: the next legitimate append refuses to sign over the forged record
    with pytest.raises(AuditError, match="first uncovered: seq 4"):
        log.append("job.run", action="score")
    assert len(log.records()) == 4 and not log.verify().ok


def test_truncated_tail(log: AuditLog) -> None:
    fill(log)
    tamper(log, "DELETE FROM adp_audit WHERE seq >= 7")
    check_bad(log, 7, "tail truncated")
    with pytest.raises(AuditError, match="records were removed"):
        log.append("job.run", action="score")
    assert log.failures == 1


def test_whole_chain_rewritten(log: AuditLog) -> None:
    """Someone recomputes every hash after a change: only the checkpoint catches it."""
    fill(log, 5)
    rows = [r.to_dict() for r in log.records()]
    rows[1]["identity"] = "mallory"
    prev = GENESIS_HASH
    updates = []
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = record_hash(row)
        updates.append(
            f"UPDATE adp_audit SET identity = '{row['identity']}', prev_hash = "
            f"'{row['prev_hash']}', hash = '{row['hash']}' WHERE seq = {row['seq']}"
        )
    tamper(log, *updates)
    check_bad(log, 5, "differs from the signed checkpoint")
    with pytest.raises(AuditError, match="rewritten"):
        log.append("job.run", action="score")


def test_altered_checkpoint_file(log: AuditLog, state_dir: Path) -> None:
    fill(log, 4)
    path = state_dir / "audit.checkpoint"
    data = json.loads(path.read_text())
    (entry,) = data["logs"].values()
    entry["seq"] = 2
    path.write_text(json.dumps(data))
    result = log.verify()
    assert not result.ok and "fails its Ed25519 signature" in result.reason
    with pytest.raises(AuditError, match="Ed25519 signature"):
        log.append("job.run", action="score")


# -- concurrency ---------------------------------------------------------------------------
APPENDER = """
import sys
from adp.observe.audit import AuditLog
log = AuditLog(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together with the others
for i in range(int(sys.argv[2])):
    log.append("concurrent", action="append", details={"proc": sys.argv[3], "i": i})
"""


def test_concurrent_writers(state_dir: Path) -> None:
    url = f"sqlite:///{state_dir / 'audit.db'}"
    AuditLog(url).close()  # create the table and key before the race
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state_dir)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", APPENDER, url, "15", f"p{n}"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    assert [p.stdout.readline().strip() for p in procs] == ["ready", "ready"]
    errors: list[BaseException] = []

    def thread_writer(n: int) -> None:
        try:
            with AuditLog(url) as own:  # its own engine and lock: real contention
                for i in range(15):
                    own.append("concurrent", action="append", details={"thread": n, "i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.close()
    for t in threads:
        t.join(timeout=120)
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert not errors, errors
    with AuditLog(url) as log:
        result = log.verify(strict=True)
        assert result.ok, result
        assert result.records_checked == 75 and result.checkpoint_seq == 75


# -- audited -------------------------------------------------------------------------------
def test_audited_success(log: AuditLog) -> None:
    with audited(log, "job.run", action="score", resource="file:///d", job_id="j1") as started:
        assert started.outcome == "started"
    records = log.records(job_id="j1")
    assert [r.outcome for r in records] == ["started", "success"]
    assert records[1].details_data() == {"started_seq": started.seq}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(ValueError("bad column x"), "failure"), (AccessDeniedError("no role"), "denied")],
)
def test_audited_failure_and_denial(log: AuditLog, error: Exception, outcome: str) -> None:
    with pytest.raises(type(error)), audited(log, "job.run", action="score", job_id="j2"):
        raise error
    end = log.records(job_id="j2")[-1]
    assert end.outcome == outcome
    assert end.reason == f"{type(error).__name__}: {error}"


def test_audited_action_does_not_run_when_unrecorded(log: AuditLog) -> None:
    fill(log, 3)
    tamper(log, "DELETE FROM adp_audit WHERE seq = 3")  # now every append refuses
    ran = False
    with pytest.raises(AuditError), audited(log, "job.run", action="score"):
        ran = True
    assert not ran


# -- PostgreSQL ----------------------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_round_trip(pg_table: str, tmp_path: Path) -> None:
    state = tmp_path / "pg-state"
    logs = [AuditLog(PG_URL, table=pg_table, state_dir=state) for _ in range(3)]
    with audited(logs[0], "job.run", action="score", job_id="pg-job"):
        pass

    def writer(log: AuditLog) -> None:
        for i in range(5):
            log.append("concurrent", action="append", details={"i": i})

    threads = [threading.Thread(target=writer, args=(log,)) for log in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    log = logs[0]
    result = log.verify(strict=True)
    assert result.ok and result.records_checked == 17, result
    assert [r.outcome for r in log.records(job_id="pg-job")] == ["started", "success"]
    engine = sa.create_engine(PG_URL)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE {pg_table} SET action = 'x' WHERE seq = 3")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TRIGGER {pg_table}_no_change ON {pg_table}")
        conn.exec_driver_sql(f"UPDATE {pg_table} SET action = 'x' WHERE seq = 3")
    engine.dispose()
    check_bad(log, 3, "does not match its hash")
    for each in logs:
        each.close()

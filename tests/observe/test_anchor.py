"""Audit tamper evidence against an attacker who can write the audit database alone.

Every attack (rewrite, delete, insert, truncate, replace) runs on SQLite and on PostgreSQL,
with the signed checkpoints anchored in a folder or in an S3 bucket (moto's server). Each
must make `verify` fail three ways: on the writer's host, through `adp audit verify
--anchor`, and for a verifier elsewhere that holds only the public key and the anchor.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from observe_helpers import PG_URL

from adp.errors import AuditError
from adp.observe.audit import GENESIS_HASH, AuditLog, audited, record_hash
from adp.observe.checkpoint import IDENTITY_TABLE
from adp.observe.cli import audit


@dataclass
class Setup:
    url: str
    table: str
    state: Path
    anchor: str
    config: dict[str, Any]

    def log(self, **kwargs: Any) -> AuditLog:
        return AuditLog(self.url, table=self.table, state_dir=self.state, **kwargs)


@pytest.fixture(params=["sqlite-folder", "postgresql-s3"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    backend, store = request.param.split("-")
    state = tmp_path / "state"
    table = f"adp_audit_t{uuid.uuid4().hex[:12]}"
    url = PG_URL if backend == "postgresql" else f"sqlite:///{tmp_path / 'audit.db'}"
    if backend == "postgresql":
        request.getfixturevalue("pg_url")  # skips (or fails in CI) without PostgreSQL
    if store == "s3":
        s3 = request.getfixturevalue("s3")
        anchor = f"s3://{s3.bucket('anchor')}/audit"
        options = s3.storage_options
    else:
        anchor, options = str(tmp_path / "anchor"), {}
    config = {
        "adp.state-dir": str(state),
        "adp.audit.url": url,
        "adp.audit.anchor": anchor,
        "adp.audit.anchor-storage-options": options,
    }
    with dask.config.set(config):
        yield Setup(url, table, state, anchor, config)
    if backend == "postgresql":
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {table}_append_only()")
            conn.execute(
                sa.text(f"DELETE FROM {IDENTITY_TABLE} WHERE audit_table = :t"), {"t": table}
            )
        engine.dispose()


def fill(log: AuditLog, n: int = 6) -> None:
    for i in range(n):
        log.append("job.run", action="score", resource=f"s3://lake/t{i}", job_id=f"j{i % 2}")


def rechain(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Renumber and re-hash ``rows`` as an attacker who knows the (unkeyed) hash would."""
    prev = GENESIS_HASH
    for seq, row in enumerate(rows, start=1):
        row.update(seq=seq, prev_hash=prev)
        row["hash"] = prev = record_hash(row)
    return rows


def overwrite(setup: Setup, rows: list[dict[str, Any]], *, drop_identity: bool = False) -> None:
    """Replace the whole table with ``rows``, straight through SQL (triggers dropped first)."""
    engine = sa.create_engine(setup.url)
    t = setup.table
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_update")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_delete")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_change ON {t}")
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}")
        conn.exec_driver_sql(f"DELETE FROM {t}")
        table = sa.Table(t, sa.MetaData(), autoload_with=conn)
        if rows:
            conn.execute(sa.insert(table), rows)
        if drop_identity:
            conn.execute(sa.text(f"DELETE FROM {IDENTITY_TABLE} WHERE audit_table = :t"), {"t": t})
    engine.dispose()


def rewrite(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[1]["identity"] = "mallory"
    return rechain(rows)


def delete(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    del rows[2]
    return rechain(rows)


def insert_middle(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.insert(3, dict(rows[3], identity="mallory", action="export"))
    return rechain(rows)


def insert_end(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rechain([*rows, dict(rows[-1], identity="mallory", action="export")])


def truncate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return rows[:-2]


ATTACKS: dict[str, Callable[[list[dict[str, Any]]], list[dict[str, Any]]]] = {
    "rewrite": rewrite,
    "delete": delete,
    "insert-middle": insert_middle,
    "insert-end": insert_end,
    "truncate": truncate,
}


def verdicts(setup: Setup, tmp_path: Path) -> tuple[Any, Any, Any]:
    """(writer's verify, `verify --anchor` there, `verify --anchor` elsewhere with only the
    public key): the first a VerificationResult, the others click results."""
    with setup.log(create=False) as log:
        local = log.verify()
    runner = CliRunner()
    target = ["--url", setup.url, "--table", setup.table, "--anchor", setup.anchor]
    here = runner.invoke(audit, ["verify", *target])
    elsewhere = tmp_path / "verifier"
    elsewhere.mkdir(exist_ok=True)
    public = elsewhere / "audit.pub"
    public.write_bytes((setup.state / "audit.ed25519.pub").read_bytes())
    with dask.config.set({"adp.state-dir": str(elsewhere / "empty-state")}):
        remote = runner.invoke(audit, ["verify", *target, "--public-key", str(public)])
    return local, here, remote


def test_an_untouched_log_verifies_everywhere(setup: Setup, tmp_path: Path) -> None:
    with setup.log() as log:
        fill(log)
    local, here, remote = verdicts(setup, tmp_path)
    assert local.ok and local.checkpoint_seq == 6, local
    assert here.exit_code == 0, here.output
    assert "6 audit records verified" in here.stdout and "6 anchored" in here.stdout
    assert remote.exit_code == 0, remote.output
    assert not (tmp_path / "verifier" / "empty-state").exists()  # verifying wrote nothing


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_on_the_database_fails_verification(
    setup: Setup, tmp_path: Path, attack: str
) -> None:
    with setup.log() as log:
        fill(log)
        rows = [r.to_dict() for r in log.records()]
    overwrite(setup, ATTACKS[attack](rows))
    local, here, remote = verdicts(setup, tmp_path)
    assert not local.ok, (attack, local)
    for result in (here, remote):
        assert result.exit_code == 1, (attack, result.output)
        assert "FAILED at seq" in result.stderr, (attack, result.stderr)
    # and no legitimate writer extends (or "launders") the tampered chain
    ran = False
    with setup.log() as log, pytest.raises(AuditError), audited(log, "job.run", action="score"):
        ran = True
    assert not ran


def test_a_replaced_log_fails_verification(setup: Setup, tmp_path: Path) -> None:
    """Records and the database's identity removed: a new, empty log at the same place."""
    with setup.log() as log:
        fill(log)
    overwrite(setup, [], drop_identity=True)
    with setup.log(create=False) as log:
        assert log.log_id is None
        result = log.verify()
        assert not result.ok and "was replaced" in result.reason, result
    with pytest.raises(AuditError, match="was replaced"), setup.log() as log:
        log.append("job.run", action="score")  # a writer refuses to start a new chain here
    _, here, remote = verdicts(setup, tmp_path)
    for result in (here, remote):
        assert result.exit_code == 1, result.output
        assert "holds no checkpoint for this audit log" in result.stderr


def test_checkpoints_are_keyed_by_the_database_not_the_url(pg_url: str, tmp_path: Path) -> None:
    table = f"adp_audit_t{uuid.uuid4().hex[:12]}"
    state = tmp_path / "state"
    other = PG_URL.replace("127.0.0.1", "localhost")
    try:
        with AuditLog(PG_URL, table=table, state_dir=state) as log:
            fill(log, 4)
            log_id = log.log_id
        with AuditLog(other, table=table, state_dir=state, create=False) as log:
            assert log.log_id == log_id
            result = log.verify()
            assert result.ok and result.checkpoint_seq == 4, result
        with AuditLog(other, table=table, state_dir=state) as log:
            log.append("job.run", action="score")  # either spelling extends the same chain
        for url in (PG_URL, other):
            with AuditLog(url, table=table, state_dir=state, create=False) as log:
                assert log.verify().checkpoint_seq == 5
    finally:
        engine = sa.create_engine(PG_URL)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {table}_append_only()")
            conn.execute(
                sa.text(f"DELETE FROM {IDENTITY_TABLE} WHERE audit_table = :t"), {"t": table}
            )
        engine.dispose()


def test_anchor_command_exports_the_checkpoint(log: AuditLog, tmp_path: Path) -> None:
    fill(log, 3)
    target = tmp_path / "second-store"
    runner = CliRunner()
    missing = runner.invoke(audit, ["verify", "--anchor", str(target)])
    assert missing.exit_code == 1 and "holds no checkpoint" in missing.stderr
    done = runner.invoke(audit, ["anchor", "--to", str(target)])
    assert done.exit_code == 0, done.output
    assert "anchored the checkpoint at seq 3" in done.stdout
    (stored,) = (target / log.log_id).iterdir()
    assert stored.name == "000000000003.json"
    ok = runner.invoke(audit, ["verify", "--anchor", str(target)])
    assert ok.exit_code == 0 and "1 anchored" in ok.stdout, ok.output


def test_a_forged_anchor_signature_fails(log: AuditLog, tmp_path: Path) -> None:
    import json

    from adp.observe.signing import load_signer

    fill(log, 2)
    target = tmp_path / "anchor"
    assert CliRunner().invoke(audit, ["anchor", "--to", str(target)]).exit_code == 0
    (stored,) = (target / log.log_id).iterdir()
    entry = json.loads(stored.read_text())
    forger = load_signer(tmp_path / "mallory")  # another key, as an attacker would have
    assert forger is not None
    from adp.observe.checkpoint import Checkpoint

    forged = Checkpoint(log.log_id, 9, "f" * 64, entry["time"]).signed(forger)
    (target / log.log_id / "000000000009.json").write_text(json.dumps(forged))
    result = CliRunner().invoke(audit, ["verify", "--anchor", str(target)])
    assert result.exit_code == 1
    assert "fails its Ed25519 signature" in result.stderr and forger.key_id in result.stderr

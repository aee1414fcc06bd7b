"""Fixtures for the observe tests: state directories, audit logs, a PostgreSQL table."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dask
import pytest
from observe_helpers import ON_CI, PG_URL

from adp.observe.audit import AuditLog


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh ``adp.state-dir`` (checkpoint key and file) with the audit URL unset."""
    state = tmp_path / "state"
    with dask.config.set({"adp.state-dir": str(state), "adp.audit.url": None}):
        yield state


@pytest.fixture
def log(state_dir: Path) -> Iterator[AuditLog]:
    """A SQLite audit log in the state directory, closed afterwards."""
    audit_log = AuditLog()
    yield audit_log
    audit_log.close()


@pytest.fixture
def pg_table() -> Iterator[str]:
    """A unique audit table name in the PostgreSQL test database, dropped afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:
        engine.dispose()
        if ON_CI:
            pytest.fail(f"PostgreSQL at {PG_URL} is unreachable under CI=true: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    table = f"adp_audit_t{uuid.uuid4().hex[:12]}"
    yield table
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    engine.dispose()

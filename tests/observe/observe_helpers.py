"""Helpers shared by the observe tests (a uniquely named module, imported by path)."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from adp.observe.audit import AuditLog

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ON_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str) -> str:
    """Return the path of ``name``; skip when missing (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        reason = (
            f"{name!r} is not installed (Debian package 'prometheus': "
            "apt-get update && apt-get install -y prometheus)"
        )
        if ON_CI:
            pytest.fail(f"{reason}; CI=true requires it")
        pytest.skip(reason)
    return path


def sqlite_path(audit_log: AuditLog) -> str:
    return audit_log.url.removeprefix("sqlite:///")


def tamper(audit_log: AuditLog, *statements: str) -> None:
    """Change a SQLite audit table behind ADP's back: drop the append-only triggers, run SQL."""
    con = sqlite3.connect(sqlite_path(audit_log))
    try:
        con.execute(f"DROP TRIGGER IF EXISTS {audit_log.table_name}_no_update")
        con.execute(f"DROP TRIGGER IF EXISTS {audit_log.table_name}_no_delete")
        for sql in statements:
            con.execute(sql)
        con.commit()
    finally:
        con.close()

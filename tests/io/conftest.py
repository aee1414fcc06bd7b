"""Fixtures for the I/O tests: moto's S3 server on 127.0.0.1 (reached through s3fs over
HTTP, never a mock of s3fs), SQLite files and the machine's PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

# No test may ask a cloud instance-metadata service for credentials: botocore would try
# 169.254.169.254 when storage_options carry none. Set before any worker process starts.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def start_moto_s3() -> tuple[Any, Any]:
    """Start moto's S3 server on 127.0.0.1, on a free port, with werkzeug's log silenced.

    The reusable helper behind the ``s3`` fixture (and ``adp bench io``): returns
    ``(server, info)`` where ``info`` has ``endpoint``, ``storage_options``, ``fs()``,
    ``bucket()`` and ``options(**extra)``; call ``server.stop()`` when done.
    """
    from adp.bench.io import start_moto

    return start_moto()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """moto's S3 server for the whole session; tests make their own bucket with ``bucket()``."""
    server, info = start_moto_s3()
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture
def table_name() -> Iterator[str]:
    """A unique table name; the tables it prefixes (and staging tables) are dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import sqlalchemy as sa

    from adp.io.sqlbase import _ENGINES

    for engine in list(_ENGINES.values()):
        try:
            with engine.begin() as conn:
                for table in sa.inspect(conn).get_table_names():
                    if table.startswith((name, "_adp_stage_")):
                        sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)
        except Exception:  # a database that is gone needs no cleaning
            pass

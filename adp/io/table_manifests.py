"""The manifests of database tables ADP committed: one row per table in
:data:`MANIFEST_TABLE`, written in the same database after the table's rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from adp.db import check_identifier, connect_error, engine_for, write_transaction

#: The table that holds the manifest of every table a :class:`~adp.io.sinks.TableSink`
#: committed.
MANIFEST_TABLE = "_adp_manifests"


def table_exists(url: str, table: str) -> bool:
    """Whether ``table`` exists in the database at ``url``.

    Raises
    ------
    adp.errors.SourceError
        When the database cannot be reached (password hidden).
    """
    engine = engine_for(url)
    try:
        return bool(sa.inspect(engine).has_table(check_identifier(table)))
    except sa.exc.OperationalError as exc:
        raise connect_error(url, exc) from None


def _manifests(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        MANIFEST_TABLE,
        metadata,
        sa.Column("table_name", sa.String(63), primary_key=True),
        sa.Column("manifest", sa.Text, nullable=False),
    )


def record_table_manifest(url: str, table: str, manifest: Mapping[str, Any]) -> None:
    """Keep ``manifest`` as the row of ``table`` in :data:`MANIFEST_TABLE` (replacing it)."""
    manifests = _manifests(sa.MetaData())
    with write_transaction(engine_for(url)) as conn:
        manifests.create(conn, checkfirst=True)
        conn.execute(sa.delete(manifests).where(manifests.c.table_name == table))
        text = json.dumps(dict(manifest), default=str)
        conn.execute(sa.insert(manifests).values(table_name=table, manifest=text))


def table_manifest(url: str, table: str) -> dict[str, Any] | None:
    """The manifest of the last commit into ``table``, or None when it has none."""
    if not table_exists(url, MANIFEST_TABLE):
        return None
    manifests = _manifests(sa.MetaData())
    with engine_for(url).connect() as conn:
        text = conn.execute(
            sa.select(manifests.c.manifest).where(manifests.c.table_name == table)
        ).scalar_one_or_none()
    return None if text is None else dict(json.loads(text))


__all__ = ["MANIFEST_TABLE", "record_table_manifest", "table_exists", "table_manifest"]

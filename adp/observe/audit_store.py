"""Where the audit trail is stored: its SQL table, the append-only triggers and transactions.

:class:`AuditStore` owns the database side of :class:`adp.observe.audit.AuditLog`: the
table (one rule for its name, :func:`adp.db.check_identifier`), the engine (made by
:func:`adp.db.engine_for`: SQLite in WAL mode with a 30 s busy timeout, ``BEGIN IMMEDIATE``
only for writes; ``pool_pre_ping`` on PostgreSQL), the triggers that refuse ``UPDATE`` and
``DELETE`` (and ``TRUNCATE`` on PostgreSQL), and write transactions serialised by
``BEGIN IMMEDIATE`` on SQLite and a transaction-level advisory lock on PostgreSQL. It knows
nothing of hashes or checkpoints.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from adp.db import check_identifier, engine_for, parse_url, write_transaction
from adp.errors import AuditError, ConfigError

_WHAT = "audit database URL"
_SQLITE_TIMEOUT = 30.0


def build_table(name: str) -> sa.Table:
    """The audit table's schema under ``name`` (checked by :func:`adp.db.check_identifier`)."""
    check_identifier(name, "audit table name")
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("time", sa.Text, nullable=False),
        sa.Column("where", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("resource", sa.Text),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("job_id", sa.Text, index=True),
        sa.Column("details", sa.Text),
        sa.Column("prev_hash", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
    )


def append_only_ddl(dialect: sa.Dialect, table: str) -> list[str]:
    """Triggers that refuse UPDATE/DELETE on ``table`` (a checked identifier, quoted here so
    that PostgreSQL does not fold a mixed-case name to another table's)."""
    quote = dialect.identifier_preparer.quote_identifier
    target = quote(table)
    if dialect.name == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {quote(f'{table}_no_{op.lower()}')} BEFORE {op} "
            f"ON {target} BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]
    if dialect.name == "postgresql":
        fn = quote(f"{table}_append_only")
        return [
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$",
            f"CREATE OR REPLACE TRIGGER {quote(f'{table}_no_change')} BEFORE UPDATE OR DELETE "
            f"ON {target} FOR EACH ROW EXECUTE FUNCTION {fn}()",
            f"CREATE OR REPLACE TRIGGER {quote(f'{table}_no_truncate')} BEFORE TRUNCATE "
            f"ON {target} FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        ]
    return []


def _advisory_key(table: str) -> int:
    return int.from_bytes(hashlib.sha256(f"adp:{table}".encode()).digest()[:8], "big", signed=True)


def audit_url(
    url: str | None, state_dir: Path, *, create: bool, configured: str | None = None
) -> URL:
    """The checked URL of the audit database: ``url``, else ``configured``
    (``adp.audit.url``), else ``sqlite:///<state_dir>/audit.db``.

    A SQLite database must be a file (checkpoints name it), inside ``adp.io.allowed-roots``
    or ``state_dir``; its path is made absolute and, with ``create``, its directory and the
    state directory are created.

    Raises
    ------
    adp.errors.ConfigError
        For a URL that does not parse or an in-memory SQLite database.
    adp.errors.AccessDeniedError
        For a link-local host or a SQLite file outside the allowed roots.
    adp.errors.AuditError
        When a directory cannot be created, or (``create=False``) the SQLite file is missing.
    """
    raw = url or configured or f"sqlite:///{state_dir / 'audit.db'}"
    parsed = parse_url(raw, what=_WHAT, state_dir=state_dir)
    if create:
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot create the ADP state directory {state_dir}: {exc}") from exc
    if parsed.get_backend_name() != "sqlite":
        return parsed
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:"):
        raise ConfigError(
            "the audit log needs a SQLite file (its checkpoints name it); "
            f"got {parsed.render_as_string(hide_password=True)!r}"
        )
    path = Path(db).expanduser().resolve()
    if not create and not path.is_file():
        raise AuditError(f"no audit log at {path}: check --url / adp.audit.url")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AuditError(f"cannot create the directory of {path}: {exc}") from exc
    return parsed.set(database=str(path))


class AuditStore:
    """The audit table in a SQL database: engine, schema, read and write transactions.

    Parameters
    ----------
    url : sqlalchemy.engine.URL
        From :func:`audit_url`.
    table : sqlalchemy.Table
        From :func:`build_table`.
    state_dir : path
        ADP's state directory (a SQLite file there is allowed whatever the allowed roots).
    create : bool
        Create the table and its triggers when missing; with ``False`` a missing table
        raises :class:`AuditError`.

    Raises
    ------
    adp.errors.AuditError
        When the driver is missing, or the database cannot be reached or the table created.
    """

    def __init__(
        self, url: URL, table: sa.Table, state_dir: str | os.PathLike[str], *, create: bool
    ) -> None:
        self.table = table
        self.name = table.name
        self.url = url.render_as_string(hide_password=True)
        try:
            self.engine: Engine = engine_for(
                url,
                what=_WHAT,
                state_dir=state_dir,
                sqlite_timeout=_SQLITE_TIMEOUT,
                sqlite_wal=True,
                sqlite_immediate=False,
                shared=False,
            )
        except (SQLAlchemyError, ImportError) as exc:
            raise AuditError(
                f"cannot use the audit database {self.url}: {exc}; check adp.audit.url and "
                "that its driver is installed"
            ) from exc
        try:
            self._create_schema(create)
        except SQLAlchemyError as exc:
            self.engine.dispose()
            raise AuditError(
                f"cannot open the audit table {self.name!r} in {self.url}: {exc}; check "
                "adp.audit.url and that the database is reachable and writable"
            ) from exc
        except BaseException:
            self.engine.dispose()
            raise

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction; appends are serialised across processes and hosts."""
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _advisory_key(self.name)}
                )
            yield conn

    def _create_schema(self, create: bool) -> None:
        if not create:
            with self.engine.connect() as conn:
                if not sa.inspect(conn).has_table(self.name):
                    raise AuditError(
                        f"no audit table {self.name!r} in {self.url}: check --url / adp.audit.url"
                    )
            return
        with self.write() as conn:
            self.table.metadata.create_all(conn, checkfirst=True)
            for statement in append_only_ddl(conn.dialect, self.name):
                conn.exec_driver_sql(statement)

    def head(self, conn: Connection) -> tuple[int, str] | None:
        """The last record's ``(seq, hash)``, or None for an empty log."""
        col = self.table.c
        row = conn.execute(sa.select(col.seq, col.hash).order_by(col.seq.desc()).limit(1)).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def insert(self, conn: Connection, row: dict[str, Any]) -> None:
        """Insert one record's row inside the caller's write transaction."""
        conn.execute(sa.insert(self.table).values(**row))

    def rows(self, query: sa.Select[Any], *, batch: int | None = None) -> Iterator[dict[str, Any]]:
        """The rows ``query`` selects, as dicts; streamed ``batch`` at a time when given.

        Raises
        ------
        adp.errors.AuditError
            When the database cannot be read.
        """
        try:
            with self.engine.connect() as conn:
                if batch is not None:
                    conn = conn.execution_options(yield_per=batch)
                for row in conn.execute(query):
                    yield dict(row._mapping)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log {self.url}: {exc}") from exc

    def create_archive(self, name: str) -> sa.Table:
        """The archive table ``name`` (this table's columns), created when missing with its
        own append-only triggers (:mod:`adp.observe.retention`).

        Raises
        ------
        adp.errors.AuditError
            When the table cannot be created.
        """
        archive = build_table(name)
        try:
            with self.write() as conn:
                archive.metadata.create_all(conn, checkfirst=True)
                for statement in append_only_ddl(conn.dialect, name):
                    conn.exec_driver_sql(statement)
        except SQLAlchemyError as exc:
            raise AuditError(
                f"cannot create the audit archive table {name!r} in {self.url}: {exc}"
            ) from exc
        return archive

    def move(self, conn: Connection, archive: sa.Table, through: int) -> int:
        """Copy the records up to ``seq`` ``through`` into ``archive`` and delete them here,
        inside the caller's write transaction (:meth:`write`); returns how many moved.

        The append-only trigger on ``DELETE`` is lifted for this delete only: dropped and
        created again on SQLite, disabled and enabled on PostgreSQL, both inside the
        transaction, so no other connection ever sees the table without it.

        Raises
        ------
        adp.errors.AuditError
            When the archive already holds one of these ``seq`` (another log's records,
            archived before this log replaced it).
        """
        col = self.table.c
        names = [c.name for c in archive.columns]
        chosen = sa.select(*(col[n] for n in names)).where(col.seq <= through)
        try:
            conn.execute(sa.insert(archive).from_select(names, chosen))
        except IntegrityError as exc:
            raise AuditError(
                f"the audit archive table {archive.name!r} in {self.url} already holds records "
                f"numbered up to {through} (from a log this one replaced): archive them "
                "elsewhere first, or use another audit table"
            ) from exc
        quote = conn.dialect.identifier_preparer.quote_identifier
        target = quote(self.name)
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {quote(f'{self.name}_no_delete')}")
        elif conn.dialect.name == "postgresql":
            trigger = quote(f"{self.name}_no_change")
            conn.exec_driver_sql(f"ALTER TABLE {target} DISABLE TRIGGER {trigger}")
        moved = conn.execute(sa.delete(self.table).where(col.seq <= through)).rowcount
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE {target} ENABLE TRIGGER {trigger}")
        else:
            for statement in append_only_ddl(conn.dialect, self.name):
                conn.exec_driver_sql(statement)
        return int(moved)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

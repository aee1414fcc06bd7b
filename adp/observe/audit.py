"""ADP's audit trail: append-only, hash-chained records in a SQL table.

Design
------
*Records* follow NIST SP 800-53 AU-3: what happened (``event_type``, ``action``), when
(``time``, UTC ISO 8601), where (``where``: host and process), the source component
(``source``: cli, api, scheduler), the outcome (``started``, ``success``, ``failure``,
``denied``), who (``identity``), on which resource (``resource``, a URI), why
(``reason``, for denials and failures), the ``job_id`` and free ``details`` (JSON text).

*Chain.* Records are numbered ``seq`` = 1, 2, 3, ... with no gaps. Each stores the previous
record's hash (``prev_hash``; 64 zeros for the first) and its own ``hash``: SHA-256 over the
canonical JSON (sorted keys, no spaces, UTF-8) of every other field including ``seq`` and
``prev_hash``. Changing a byte breaks that record's hash; deleting, swapping or inserting
records breaks the sequence or the links. :meth:`AuditLog.verify` walks the chain and names
the first bad ``seq``: a gap names the missing number; a record that links past its
predecessor to the one before it names the predecessor as inserted.

*Checkpoints.* A chain alone cannot show that its tail was cut off, nor that it was
rewritten wholesale by someone who recomputed the (unkeyed) hashes. After each append the
writer stores the new head ``(seq, hash)`` in ``<state-dir>/audit.checkpoint``, signed with
HMAC-SHA256 under the checkpoint key (``adp.audit.checkpoint-key`` or a 0600 key file
created in the state directory; see :mod:`adp.observe.checkpoint`). The database alone
cannot move that checkpoint, so verification detects a truncated tail (the log ends before
the checkpoint) and a rewrite (the record at the checkpoint's ``seq`` has another hash).
Records after the checkpoint (written by another host sharing the database, or by a writer
that died between commit and checkpoint) are reported as *unanchored*;
``verify(strict=True)`` treats them as failures. Appends refuse to extend a log whose head
is behind its checkpoint.

*Concurrency.* An append reads the head and inserts ``seq + 1`` in one transaction: on
SQLite under ``BEGIN IMMEDIATE`` (WAL journal, 30 s busy timeout), on PostgreSQL under a
transaction-level advisory lock; a unique-key conflict on ``seq`` is retried elsewhere.
Writers on one host also hold an exclusive ``flock`` on the checkpoint file.

*Append-only.* On SQLite and PostgreSQL, triggers refuse ``UPDATE`` and ``DELETE`` (and
``TRUNCATE`` on PostgreSQL) on the table. They stop accidents, not someone who can drop
them; the chain and checkpoints catch that.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import os
import random
import re
import socket
import threading
import time as _time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from adp.errors import AuditError, ConfigError
from adp.observe.checkpoint import Checkpoint, CheckpointStore, load_key
from adp.observe.records import (
    GENESIS_HASH,
    OUTCOMES,
    AuditRecord,
    VerificationResult,
    parse_since,
    record_hash,
    utc_iso,
    verify_chain,
)

__all__ = [
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditLog",
    "AuditRecord",
    "VerificationResult",
    "audited",
    "record_hash",
]

logger = logging.getLogger(__name__)

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,50}")
_RETRIES = 50


def _default_identity() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid:{os.getuid()}"


def _json_text(details: Any) -> str | None:
    if details is None:
        return None
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def _build_table(name: str) -> sa.Table:
    if not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"audit table name {name!r} is not a safe SQL identifier; use lower-case letters, "
            "digits and underscores, starting with a letter or underscore (at most 51)"
        )
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


def _append_only_ddl(dialect: str, table: str) -> list[str]:
    """Triggers that refuse UPDATE/DELETE; ``table`` is a validated identifier."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            for op in ("UPDATE", "DELETE")
        ]
    if dialect == "postgresql":
        fn = f"{table}_append_only"
        return [
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$",
            f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {fn}()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()",
        ]
    return []


def _advisory_key(table: str) -> int:
    return int.from_bytes(hashlib.sha256(f"adp:{table}".encode()).digest()[:8], "big", signed=True)


class AuditLog:
    """An append-only, hash-chained audit log in a SQL database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL. Defaults to ``adp.audit.url``, and when that is null to
        ``sqlite:///<adp.state-dir>/audit.db``.
    table : str, default "adp_audit"
        Table name; must be a plain lower-case SQL identifier.
    state_dir : path, optional
        Where the checkpoint file and key live; defaults to ``adp.state-dir``.
    checkpoint_key : str, optional
        The HMAC key for checkpoints; defaults to ``adp.audit.checkpoint-key``, then to a
        key file created in ``state_dir``.
    create : bool, default True
        Create the database table (and SQLite file) when missing; with ``False`` a missing
        log raises :class:`AuditError` (for read-only use such as ``adp audit verify``).

    Raises
    ------
    AuditError
        When the database cannot be reached or the table cannot be created.
    ConfigError
        For an invalid table name or URL.

    Examples
    --------
    >>> log = AuditLog("sqlite:///audit.db")  # doctest: +SKIP
    >>> log.append("job.run", action="score", resource="s3://lake/t", job_id="j1")  # doctest: +SKIP
    >>> log.verify().ok  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        table: str = "adp_audit",
        state_dir: str | os.PathLike[str] | None = None,
        checkpoint_key: str | None = None,
        create: bool = True,
    ) -> None:
        from adp.config import settings

        cfg = settings()
        self.create = create
        self.state_dir = Path(state_dir if state_dir is not None else cfg.state_dir).resolve()
        self._table = _build_table(table)
        self.table_name = table
        raw = url or cfg.audit.url or f"sqlite:///{self.state_dir / 'audit.db'}"
        try:
            parsed = make_url(raw)
        except Exception as exc:  # sqlalchemy raises ArgumentError
            raise ConfigError(f"invalid audit database URL {raw!r}: {exc}") from exc
        if create:
            try:
                self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise AuditError(
                    f"cannot create the ADP state directory {self.state_dir}: {exc}"
                ) from exc
        parsed = self._normalise(parsed)
        self.url = parsed.render_as_string(hide_password=True)
        key = load_key(self.state_dir, checkpoint_key or cfg.audit.checkpoint_key, create=create)
        self._checkpoints = CheckpointStore(self.state_dir, key, f"{self.url}#{table}")
        self._lock = threading.Lock()
        self._where = f"{socket.gethostname()}/pid:{os.getpid()}"
        self.appended = 0
        self.failures = 0
        try:
            self._engine = self._create_engine(parsed)
        except (SQLAlchemyError, ImportError) as exc:
            raise AuditError(
                f"cannot use the audit database {self.url}: {exc}; check adp.audit.url and "
                "that its driver is installed"
            ) from exc
        try:
            self._create_schema()
        except SQLAlchemyError as exc:
            self._engine.dispose()
            raise AuditError(
                f"cannot open the audit table {table!r} in {self.url}: {exc}; check "
                "adp.audit.url and that the database is reachable and writable"
            ) from exc
        except BaseException:
            self._engine.dispose()
            raise

    # -- setup -------------------------------------------------------------------------
    def _normalise(self, parsed: URL) -> URL:
        if parsed.get_backend_name() == "sqlite":
            db = parsed.database
            if not db or db == ":memory:" or db.startswith("file:"):
                raise ConfigError(
                    "the audit log needs a SQLite file (its checkpoints name it); "
                    f"got {parsed.render_as_string(hide_password=True)!r}"
                )
            path = Path(db).expanduser().resolve()
            if not self.create and not path.is_file():
                raise AuditError(f"no audit log at {path}: check --url / adp.audit.url")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AuditError(f"cannot create the directory of {path}: {exc}") from exc
            parsed = parsed.set(database=str(path))
        return parsed

    def _create_engine(self, parsed: URL) -> Engine:
        if parsed.get_backend_name() != "sqlite":
            return sa.create_engine(parsed, pool_pre_ping=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("adp_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    @contextlib.contextmanager
    def _write_tx(self) -> Iterator[Connection]:
        with self._engine.connect() as raw:
            conn = raw.execution_options(adp_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k)"),
                        {"k": _advisory_key(self.table_name)},
                    )
                yield conn

    def _create_schema(self) -> None:
        if not self.create:
            with self._engine.connect() as conn:
                if not sa.inspect(conn).has_table(self.table_name):
                    raise AuditError(
                        f"no audit table {self.table_name!r} in {self.url}: check --url / "
                        "adp.audit.url"
                    )
            return
        with self._write_tx() as conn:
            self._table.metadata.create_all(conn, checkfirst=True)
            for statement in _append_only_ddl(conn.dialect.name, self.table_name):
                conn.exec_driver_sql(statement)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AuditLog({self.url!r}, table={self.table_name!r})"

    # -- writing -----------------------------------------------------------------------
    def append(
        self,
        event_type: str,
        *,
        action: str,
        resource: str | None = None,
        outcome: str = "success",
        reason: str | None = None,
        job_id: str | None = None,
        details: Any = None,
        identity: str | None = None,
        source: str = "api",
    ) -> AuditRecord:
        """Append one record and advance the signed checkpoint.

        Parameters
        ----------
        event_type : str
            What kind of event, e.g. ``"job.run"``, ``"graph.submitted"``.
        action : str
            The action attempted, e.g. ``"score"``.
        resource : str, optional
            The URI acted on.
        outcome : {"success", "failure", "denied", "started"}
            How it ended.
        reason : str, optional
            Why, for denials and failures.
        job_id : str, optional
            The ADP job the event belongs to.
        details : JSON-serialisable, optional
            Extra facts; stored as canonical JSON text.
        identity : str, optional
            Who; defaults to the operating-system user.
        source : str, default "api"
            The component: ``"cli"``, ``"api"`` or ``"scheduler"``.

        Returns
        -------
        AuditRecord
            The stored record, with its ``seq`` and ``hash``.

        Raises
        ------
        AuditError
            When the record cannot be written (the caller must not proceed), or the log's
            head is behind its signed checkpoint (truncated).
        ConfigError
            For an invalid outcome or an empty event type, action or source.
        """
        if outcome not in OUTCOMES:
            raise ConfigError(f"outcome={outcome!r} is not one of {', '.join(OUTCOMES)}")
        for name, value in (("event_type", event_type), ("action", action), ("source", source)):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"audit {name} must be a non-empty string, got {value!r}")
        fields: dict[str, Any] = {
            "event_type": event_type,
            "where": self._where,
            "source": source,
            "outcome": outcome,
            "identity": identity or _default_identity(),
            "resource": resource,
            "action": action,
            "reason": reason,
            "job_id": job_id,
            "details": _json_text(details),
        }
        try:
            with self._lock, self._checkpoints.locked():
                checkpoint = self._checkpoints.read()
                record = self._insert(fields, checkpoint)
                self._checkpoints.advance(record.seq, record.hash, record.time)
        except AuditError:
            self.failures += 1
            raise
        except SQLAlchemyError as exc:
            self.failures += 1
            raise AuditError(
                f"cannot append to the audit log {self.url}: {exc}; check adp.audit.url and "
                "that the database is reachable and writable"
            ) from exc
        self.appended += 1
        return record

    def _insert(self, fields: dict[str, Any], checkpoint: Checkpoint | None) -> AuditRecord:
        col = self._table.c
        for attempt in range(_RETRIES):
            try:
                with self._write_tx() as conn:
                    head = conn.execute(
                        sa.select(col.seq, col.hash).order_by(col.seq.desc()).limit(1)
                    ).first()
                    seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS_HASH)
                    if checkpoint is not None and seq < checkpoint.seq:
                        raise AuditError(
                            f"the audit log {self.url} ends at seq {seq} but its signed "
                            f"checkpoint is at seq {checkpoint.seq}: records were removed; "
                            "run `adp audit verify` and investigate before writing more"
                        )
                    if checkpoint is not None and seq == checkpoint.seq and prev != checkpoint.hash:
                        raise AuditError(
                            f"the head of the audit log {self.url} (seq {seq}) differs from its "
                            "signed checkpoint: the log was rewritten; run `adp audit verify`"
                        )
                    row = {**fields, "seq": seq + 1, "time": utc_iso(), "prev_hash": prev}
                    row["hash"] = record_hash(row)
                    conn.execute(sa.insert(self._table).values(**row))
                return AuditRecord(**row)
            except (IntegrityError, OperationalError) as exc:
                retry = isinstance(exc, IntegrityError) or "locked" in str(exc).lower()
                if not retry or attempt == _RETRIES - 1:
                    raise
                _time.sleep(random.uniform(0.005, 0.02) * (1 + attempt // 5))
        raise AssertionError("unreachable")

    # -- reading -----------------------------------------------------------------------
    def records(
        self,
        job_id: str | None = None,
        since: datetime | str | None = None,
        *,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Return records in ``seq`` order, optionally for one job and from a time on.

        Parameters
        ----------
        job_id : str, optional
            Only this job's records.
        since : datetime or ISO 8601 str, optional
            Only records at or after this time (naive times are taken as UTC).
        limit : int, optional
            At most this many records (the first ones).

        Raises
        ------
        AuditError
            When the database cannot be read.
        """
        col = self._table.c
        query = sa.select(self._table).order_by(col.seq)
        if job_id is not None:
            query = query.where(col.job_id == job_id)
        if since is not None:
            query = query.where(col.time >= parse_since(since))
        if limit is not None:
            query = query.limit(limit)
        try:
            with self._engine.connect() as conn:
                return [self._row(r) for r in conn.execute(query)]
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log {self.url}: {exc}") from exc

    @staticmethod
    def _row(row: Any) -> AuditRecord:
        data = dict(row._mapping)
        data["seq"] = int(data["seq"])
        return AuditRecord(**data)

    def verify(self, *, strict: bool = False) -> VerificationResult:
        """Walk the whole chain and compare its head with the signed checkpoint.

        Parameters
        ----------
        strict : bool, default False
            Also fail on records after the checkpoint (unanchored), naming the first one.

        Returns
        -------
        VerificationResult
            ``ok`` and the count, or the first bad ``seq`` and the reason.

        Raises
        ------
        AuditError
            When the database cannot be read.
        """
        lock = self._checkpoints.locked(shared=True) if strict else contextlib.nullcontext()
        with lock:  # strict: no append may land between reading the checkpoint and the walk
            try:
                checkpoint, problem = self._checkpoints.read(), None
            except AuditError as exc:
                checkpoint, problem = None, str(exc)
            head = None if checkpoint is None else (checkpoint.seq, checkpoint.hash)
            result = verify_chain(self._stream(), head, strict=strict)
        if result.ok and problem is not None:
            return VerificationResult(False, result.records_checked, None, problem, result.head_seq)
        return result

    def _stream(self) -> Iterator[AuditRecord]:
        query = sa.select(self._table).order_by(self._table.c.seq)
        try:
            with self._engine.connect() as conn:
                for row in conn.execution_options(yield_per=1000).execute(query):
                    yield self._row(row)
        except SQLAlchemyError as exc:
            raise AuditError(f"cannot read the audit log {self.url}: {exc}") from exc


def _count(client: Any, **figures: float) -> None:
    if client is None:
        return
    from adp.observe.events import report_client

    try:
        report_client(client, **figures)
    except Exception:  # metrics must never break the audited action
        logger.debug("could not report audit figures", exc_info=True)


@contextlib.contextmanager
def audited(
    log: AuditLog,
    event_type: str,
    *,
    action: str,
    resource: str | None = None,
    job_id: str | None = None,
    details: Any = None,
    identity: str | None = None,
    source: str = "api",
    client: Any = None,
) -> Iterator[AuditRecord]:
    """Run a block only if its audit record is written; record how it ended.

    A ``started`` record is appended before the block. If that fails, :class:`AuditError`
    is raised and the block never runs. Afterwards a ``success`` record is appended, or a
    ``failure`` (``denied`` for a :class:`PermissionError`) record with the exception as
    the reason; the exception then propagates.

    Parameters
    ----------
    log : AuditLog
        Where to write.
    event_type, action, resource, job_id, details, identity, source
        As for :meth:`AuditLog.append`.
    client : distributed.Client, optional
        When given, ``audit_records`` and ``audit_write_failures`` are reported to the
        scheduler's metrics through it.

    Yields
    ------
    AuditRecord
        The ``started`` record.

    Raises
    ------
    AuditError
        When the ``started`` or ``success`` record cannot be written. (When the block
        failed and its failure record cannot be written, the block's exception propagates
        with a note.)
    """
    common: dict[str, Any] = {
        "action": action,
        "resource": resource,
        "job_id": job_id,
        "identity": identity,
        "source": source,
    }
    try:
        started = log.append(event_type, outcome="started", details=details, **common)
    except AuditError:
        _count(client, audit_write_failures=1)
        raise
    _count(client, audit_records=1)
    link = {"started_seq": started.seq}
    try:
        yield started
    except BaseException as exc:
        outcome = "denied" if isinstance(exc, PermissionError) else "failure"
        reason = f"{type(exc).__name__}: {exc}"[:4000]
        try:
            log.append(event_type, outcome=outcome, reason=reason, details=link, **common)
        except AuditError as audit_exc:
            _count(client, audit_write_failures=1)
            exc.add_note(f"and its audit record could not be written: {audit_exc}")
        else:
            _count(client, audit_records=1)
        raise
    try:
        log.append(event_type, outcome="success", details=link, **common)
    except AuditError:
        _count(client, audit_write_failures=1)
        raise
    _count(client, audit_records=1)

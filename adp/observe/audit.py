"""ADP's audit trail: append-only, hash-chained records in a SQL table.

Design
------
*Records* follow NIST SP 800-53 AU-3: what happened (``event_type``, ``action``), when
(``time``, UTC ISO 8601), where (``where``: host and process), the source component
(``source``: cli, api, scheduler), the outcome (``started``, ``success``, ``failure``,
``denied``, ``interrupted``), who (``identity``), on which resource (``resource``, a URI),
why (``reason``, for denials, failures and interruptions), the ``job_id`` and free
``details`` (JSON text). A job ``started`` whose owner process died without an outcome is
closed as ``interrupted`` by :func:`close_orphaned_jobs` (:mod:`adp.observe.orphans`).

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

*Modules.* This one holds :class:`AuditLog` (appending, reading, verifying);
:mod:`adp.observe.audit_store` the table, triggers, engine and transactions;
:mod:`adp.observe.records` the records, hashes and chain walk; :mod:`adp.observe.checkpoint`
the signed checkpoints; :mod:`adp.observe.audited` the :func:`audited` context manager
(importable from here too); :mod:`adp.observe.retention` the archiving of old records (a
chain may start after an archived prefix only where a signed archive mark vouches for it).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import os
import random
import socket
import threading
import time as _time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from adp.errors import AuditError, ConfigError
from adp.observe.audit_store import AuditStore, audit_url, build_table
from adp.observe.audited import audited
from adp.observe.checkpoint import Checkpoint, CheckpointStore, open_checkpoints
from adp.observe.orphans import OutcomeExists, close_orphaned_jobs
from adp.observe.records import (
    GENESIS_HASH,
    OUTCOMES,
    AuditRecord,
    VerificationResult,
    parse_since,
    record_hash,
    redact_fields,
    utc_iso,
)
from adp.observe.retention import archive_marks, verify_from_archive

__all__ = [
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditLog",
    "AuditRecord",
    "OutcomeExists",
    "VerificationResult",
    "audited",
    "close_orphaned_jobs",
    "record_hash",
]

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


def _record(row: dict[str, Any]) -> AuditRecord:
    row["seq"] = int(row["seq"])
    return AuditRecord(**row)


class AuditLog:
    """An append-only, hash-chained audit log in a SQL database.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL. Defaults to ``adp.audit.url``, and when that is null to
        ``sqlite:///<adp.state-dir>/audit.db``.
    table : str, default "adp_audit"
        Table name; a plain SQL identifier (:func:`adp.db.check_identifier`).
    state_dir : path, optional
        Where the checkpoint file and key live; defaults to ``adp.state-dir``.
    create : bool, default True
        Create the database table (and SQLite file) when missing; with ``False`` a missing
        log raises :class:`AuditError` (for read-only use such as ``adp audit verify``).

    Raises
    ------
    AuditError
        When the database cannot be reached or the table cannot be created.
    ConfigError
        For an invalid table name or URL.
    AccessDeniedError
        For a link-local database host, or a SQLite file outside ``adp.io.allowed-roots``
        and the state directory.

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
        create: bool = True,
    ) -> None:
        from adp.config import settings

        cfg = settings()
        self.create = create
        self.state_dir = Path(state_dir if state_dir is not None else cfg.state_dir).resolve()
        schema = build_table(table)
        self.table_name = table
        parsed = audit_url(url, self.state_dir, create=create, configured=cfg.audit.url)
        self.url = parsed.render_as_string(hide_password=True)
        self._lock = threading.Lock()
        self._where = f"{socket.gethostname()}/pid:{os.getpid()}"
        self.appended = 0
        self.failures = 0
        self._store = AuditStore(parsed, schema, self.state_dir, create=create)
        try:  # keyed by the database's identity, signed with Ed25519 (adp.observe.checkpoint)
            self._checkpoints = open_checkpoints(
                self._store.engine, table, self.state_dir, create=create
            )
        except BaseException:
            self._store.close()
            raise
        self.log_id = self._checkpoints.log_id

    def close(self) -> None:
        """Release the database connections."""
        self._store.close()

    @property
    def store(self) -> AuditStore:
        """The log's table and transactions (:class:`adp.observe.audit_store.AuditStore`)."""
        return self._store

    @property
    def checkpoints(self) -> CheckpointStore:
        """The log's signed checkpoints (:class:`adp.observe.checkpoint.CheckpointStore`)."""
        return self._checkpoints

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
        once: bool = False,
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
        outcome : {"success", "failure", "denied", "started", "interrupted", "cancelled"}
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
        once : bool, default False
            For a job's outcome: append only if job ``job_id`` has no record of
            ``event_type`` but ``started`` yet, checked in the append's own transaction, so
            of writers closing one job at once exactly one appends; the others get
            :class:`~adp.observe.orphans.OutcomeExists`.

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
        if once and (not job_id or outcome == "started"):
            raise ConfigError(f"once=True appends a job's outcome: got {job_id=}, {outcome=}")
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
        fields = redact_fields(fields)  # no password or key in the trail (adp.redact)
        try:
            with self._lock, self._checkpoints.locked():
                checkpoint = self._checkpoints.read()
                record = self._insert(fields, checkpoint, once)
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

    def _insert(
        self, fields: dict[str, Any], checkpoint: Checkpoint | None, once: bool = False
    ) -> AuditRecord:
        for attempt in range(_RETRIES):
            try:
                with self._store.write() as conn:
                    if once and self._has_outcome(conn, fields["event_type"], fields["job_id"]):
                        raise OutcomeExists(f"job {fields['job_id']!r} has an outcome already")
                    seq, prev = self._store.head(conn) or (0, GENESIS_HASH)
                    self._check_head(seq, prev, checkpoint, conn)
                    row = {**fields, "seq": seq + 1, "time": utc_iso(), "prev_hash": prev}
                    row["hash"] = record_hash(row)
                    self._store.insert(conn, row)
                    # signed before the commit: a crash before advance() is recoverable
                    self._checkpoints.intend(row["seq"], row["hash"], row["time"])
                return AuditRecord(**row)
            except (IntegrityError, OperationalError) as exc:
                retry = isinstance(exc, IntegrityError) or "locked" in str(exc).lower()
                if not retry or attempt == _RETRIES - 1:
                    raise
                _time.sleep(random.uniform(0.005, 0.02) * (1 + attempt // 5))
        raise AssertionError("unreachable")

    def _has_outcome(self, conn: sa.Connection, event_type: str, job_id: str | None) -> bool:
        col = self._store.table.c
        other = sa.exists().where(
            col.event_type == event_type, col.job_id == job_id, col.outcome != "started"
        )
        return bool(conn.execute(sa.select(other)).scalar())

    def _check_head(
        self, seq: int, prev: str, checkpoint: Checkpoint | None, conn: sa.Connection
    ) -> None:
        """Refuse to extend a log whose head is behind, past, or differs from, its checkpoint."""
        covered = 0 if checkpoint is None else checkpoint.seq
        intent = self._checkpoints.intent() if seq == covered + 1 else None
        matches = intent is not None and intent.seq == seq and intent.hash == prev
        if intent is not None and matches and self._intact(conn, seq):
            # this state directory's writer committed the head and died before signing it:
            # its signed write intent proves the record is its own, so sign it now
            self._checkpoints.advance(seq, prev, intent.time)
            covered = seq
        if seq > covered:  # never sign over records nobody signed (no laundering)
            raise AuditError(
                f"the audit log {self.url} has records {covered + 1}..{seq} not covered by a "
                f"signed checkpoint (first uncovered: seq {covered + 1}): they were inserted "
                "behind ADP's back, written from another state directory, or left by a crash; "
                "refusing to extend the chain over them. Run `adp audit verify` and investigate"
            )
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

    def _intact(self, conn: sa.Connection, seq: int) -> bool:
        """Whether record ``seq``'s content still hashes to its stored hash."""
        table = self._store.table
        row = conn.execute(sa.select(table).where(table.c.seq == seq)).mappings().first()
        if row is None:
            return False
        record = _record(dict(row))
        return record_hash(record.to_dict()) == record.hash

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
        table = self._store.table
        col = table.c
        query = sa.select(table).order_by(col.seq)
        if job_id is not None:
            query = query.where(col.job_id == job_id)
        if since is not None:
            query = query.where(col.time >= parse_since(since))
        if limit is not None:
            query = query.limit(limit)
        return [_record(row) for row in self._store.rows(query)]

    def verify(
        self, *, strict: bool = True, anchors: Mapping[int, str] | None = None
    ) -> VerificationResult:
        """Walk the whole chain and compare its head with the signed checkpoint.

        Parameters
        ----------
        strict : bool, default True
            Also fail on records after the checkpoint (unanchored), naming the first one.
        anchors : mapping of int to str, optional
            Verified checkpoints ``{seq: hash}`` from an anchor
            (:func:`adp.observe.anchor.anchored_heads`), checked too.

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
            marks = archive_marks(self._checkpoints)  # a prefix archived by adp retention
            walk = functools.partial(
                verify_from_archive, strict=strict, anchors=anchors, marks=marks
            )
            result = walk(self._stream(), head)
            intent = self._checkpoints.intent() if problem is None else None
            covered = 0 if head is None else head[0]
            if not result.ok and result.unanchored == 1 and intent and intent.seq == covered + 1:
                # a writer died between committing its record and signing it: its signed
                # write intent covers exactly that record, when the hashes agree
                retried = walk(self._stream(), (intent.seq, intent.hash))
                result = retried if retried.ok else result
        if problem is not None and (result.ok or result.unanchored):  # the cause, not its effect
            return VerificationResult(False, result.records_checked, None, problem, result.head_seq)
        return result

    def unfinished(self, event_type: str) -> list[AuditRecord]:
        """The ``started`` records of ``event_type`` whose job has no other record of that
        event type yet (no outcome), in ``seq`` order; records without a ``job_id`` are
        left out.

        Raises
        ------
        AuditError
            When the database cannot be read.
        """
        table = self._store.table
        col = table.c
        later = table.alias("later")
        outcome = (
            sa.select(later.c.seq)
            .where(later.c.event_type == event_type)
            .where(later.c.job_id == col.job_id)
            .where(later.c.outcome != "started")
        )
        query = (
            sa.select(table)
            .where(col.event_type == event_type)
            .where(col.outcome == "started")
            .where(col.job_id.is_not(None))
            .where(~outcome.exists())
            .order_by(col.seq)
        )
        return [_record(row) for row in self._store.rows(query)]

    def _stream(self) -> Iterator[AuditRecord]:
        query = sa.select(self._store.table).order_by(self._store.table.c.seq)
        for row in self._store.rows(query, batch=1000):
            yield _record(row)

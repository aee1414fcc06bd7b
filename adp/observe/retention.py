"""Retention of the audit trail: old records move to an archive table, and the chain that
remains still verifies.

*Archiving.* :func:`archive_audit` moves the records older than
``adp.retention.audit-days`` (a prefix of the chain, ``seq`` 1..*b* or, after earlier runs,
*a*..*b*) from the audit table into ``<table>_archive`` (the same columns, append-only
too). It runs only on a log that verifies (strictly), is itself audited (a
``retention.audit`` record, written before anything moves, with the number of records and
the boundary ``seq``; then its outcome), and never moves the chain's head.

*The boundary.* After a move the first remaining record (*b* + 1) still links to record
*b* through its ``prev_hash``, but the chain no longer starts at 1, which verification
treats as records removed, and must, because that is exactly what an attacker who deletes
the oldest records would leave. So before anything is deleted, and in the transaction that
deletes, ADP signs an *archive mark*: "records up to *b* were archived, and record *b*'s
hash was *h*", with the checkpoint key (:mod:`adp.observe.signing`) under its own prefix,
so a mark can never pass for a checkpoint nor a checkpoint for a mark. Marks are kept in
``<state-dir>/audit.archive``, beside the checkpoint file, one set per log identity.
:meth:`adp.observe.audit.AuditLog.verify` (:func:`verify_from_archive`) accepts a chain
that starts at *b* + 1 only when a mark for *b* verifies and record *b* + 1 links to its
hash: records deleted directly, without the archive step, are still reported missing.
:func:`verify_archive` checks the archive table itself against the marks.

*Database side.* :meth:`adp.observe.audit_store.AuditStore.move` copies and deletes in one
write transaction (the append-only triggers are lifted inside it only).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa

from adp.db import check_identifier
from adp.errors import AuditError
from adp.observe.audit_store import AuditStore, build_table
from adp.observe.audited import AuditAppender, audited
from adp.observe.checkpoint import Checkpoint, CheckpointStore, _write_private
from adp.observe.records import (
    AuditRecord,
    VerificationResult,
    utc_iso,
    verify_chain,
)

__all__ = [
    "ARCHIVE_FILE",
    "ARCHIVE_PREFIX",
    "ARCHIVE_SUFFIX",
    "ArchivableLog",
    "AuditArchive",
    "archive_audit",
    "archive_marks",
    "archive_table_name",
    "sign_archive_mark",
    "verify_archive",
    "verify_from_archive",
]

#: The file of signed archive marks, in the state directory beside ``audit.checkpoint``.
ARCHIVE_FILE = "audit.archive"
#: Signed before a mark's payload, so a mark can never pass for a checkpoint (or intent).
ARCHIVE_PREFIX = b"adp-audit-archive:"
#: The archive table is the audit table's name with this suffix.
ARCHIVE_SUFFIX = "_archive"
#: The audit event of an archive run.
EVENT = "retention.audit"


class ArchivableLog(AuditAppender, Protocol):
    """What archiving needs of a log: :class:`adp.observe.audit.AuditLog`."""

    table_name: str
    url: str

    @property
    def store(self) -> AuditStore: ...

    @property
    def checkpoints(self) -> CheckpointStore: ...

    def verify(
        self, *, strict: bool = ..., anchors: Mapping[int, str] | None = ...
    ) -> VerificationResult: ...


@dataclass(frozen=True)
class AuditArchive:
    """What an archive run moved (or, with ``dry_run``, would move).

    Attributes
    ----------
    moved : int
        Records moved to the archive table (to be moved, for a dry run).
    first_seq, through_seq : int or None
        The first and last ``seq`` moved; None when nothing was.
    archive_table : str
        ``<audit table>_archive``.
    cutoff : str or None
        Records older than this UTC time were due; None when ``audit-days`` is not set.
    dry_run : bool
        Whether nothing was changed on purpose.
    record_seq : int or None
        The ``seq`` of the run's ``retention.audit`` record (None when nothing moved).
    """

    moved: int
    first_seq: int | None
    through_seq: int | None
    archive_table: str
    cutoff: str | None
    dry_run: bool = False
    record_seq: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary."""
        return {
            "moved": self.moved,
            "first_seq": self.first_seq,
            "through_seq": self.through_seq,
            "archive_table": self.archive_table,
            "cutoff": self.cutoff,
            "dry_run": self.dry_run,
            "record_seq": self.record_seq,
        }


def archive_table_name(table: str) -> str:
    """``<table>_archive``, checked by :func:`adp.db.check_identifier`.

    Raises
    ------
    adp.errors.ConfigError
        When the derived name is not a plain identifier (the audit table's name is too
        long to take the suffix).
    """
    return check_identifier(f"{table}{ARCHIVE_SUFFIX}", "audit archive table name")


# -- signed archive marks --------------------------------------------------------------------
def _load_marks(checkpoints: CheckpointStore) -> dict[str, Any]:
    try:
        data = json.loads((checkpoints.state_dir / ARCHIVE_FILE).read_text())
        marks = data["marks"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return marks if isinstance(marks, dict) else {}


def archive_marks(checkpoints: CheckpointStore) -> dict[int, str]:
    """The verified archive marks of ``checkpoints``' log: ``{last archived seq: its hash}``.

    A mark whose signature does not verify under the public key, or that names another
    log, is left out: it vouches for nothing, so a chain that needs it fails verification.
    """
    log_id, verifier = checkpoints.log_id, checkpoints.verifier
    if log_id is None or verifier is None:
        return {}
    entries = _load_marks(checkpoints).get(log_id)
    out: dict[int, str] = {}
    for entry in entries.values() if isinstance(entries, dict) else ():
        try:
            mark = Checkpoint(
                str(entry["log"]), int(entry["seq"]), str(entry["hash"]), str(entry["time"])
            )
            ok = verifier.verify(ARCHIVE_PREFIX + mark.payload(), str(entry["sig"]))
        except (KeyError, TypeError, ValueError):
            continue
        if ok and mark.log_id == log_id:
            out[mark.seq] = mark.hash
    return out


def sign_archive_mark(checkpoints: CheckpointStore, seq: int, hash_: str, time: str) -> None:
    """Sign "records up to ``seq`` were archived; record ``seq`` had ``hash_``" and keep it
    in ``<state-dir>/audit.archive``. Call while holding ``checkpoints.locked()``.

    Raises
    ------
    adp.errors.AuditError
        When there is no signing key or log identity, or the file cannot be written.
    """
    signer, log_id = checkpoints.signer, checkpoints.log_id
    if signer is None or log_id is None:
        raise AuditError(
            f"cannot sign an audit archive mark in {checkpoints.state_dir}: no signing key "
            "or log identity (the log was opened read-only)"
        )
    marks = _load_marks(checkpoints)
    mark = Checkpoint(log_id, seq, hash_, time)
    entry = {**mark.signed(signer), "sig": signer.sign(ARCHIVE_PREFIX + mark.payload())}
    own = marks.get(log_id)
    marks[log_id] = {**(own if isinstance(own, dict) else {}), str(seq): entry}
    _write_private(checkpoints.state_dir / ARCHIVE_FILE, {"version": 1, "marks": marks})


# -- verification ----------------------------------------------------------------------------
def verify_from_archive(
    records: Iterable[AuditRecord],
    checkpoint: tuple[int, str] | None = None,
    *,
    strict: bool = True,
    anchors: Mapping[int, str] | None = None,
    marks: Mapping[int, str] | None = None,
) -> VerificationResult:
    """:func:`adp.observe.records.verify_chain`, for a chain whose oldest records may have
    been archived.

    A chain that starts at ``seq`` 1 is checked by ``verify_chain`` itself. One that starts
    at *b* + 1 is accepted only when ``marks`` (from :func:`archive_marks`) hold *b* and
    record *b* + 1 links to the hash they vouch for; it is then checked from there exactly
    as ``verify_chain`` checks a whole chain (links, hashes, checkpoints, anchors, a cut
    tail, unanchored records).

    Parameters
    ----------
    records : iterable of AuditRecord
        The records left in the audit table, in ascending ``seq`` order.
    checkpoint, strict, anchors
        As for ``verify_chain``.
    marks : mapping of int to str, optional
        Verified archive marks ``{last archived seq: its hash}``.
    """
    stream = iter(records)
    first = next(stream, None)
    everything: Iterator[AuditRecord] = (
        stream if first is None else itertools.chain([first], stream)
    )
    if first is None or first.seq == 1 or not marks:
        return verify_chain(everything, checkpoint, strict=strict, anchors=anchors)
    boundary = first.seq - 1
    if boundary not in marks:
        below = max((seq for seq in marks if seq < boundary), default=0)
        newest = max(marks)
        return VerificationResult(
            False,
            0,
            below + 1,
            f"records {below + 1}..{boundary} are missing: the log starts at {first.seq}, "
            + (
                f"but ADP archived records only up to {below} (signed archive marks)"
                if below
                else f"and no signed archive mark covers them (the newest is at {newest})"
            ),
            below,
            None if checkpoint is None else checkpoint[0],
        )
    return verify_chain(
        everything,
        checkpoint,
        strict=strict,
        anchors=anchors,
        start=(boundary, marks[boundary]),
    )


def verify_archive(log: ArchivableLog) -> VerificationResult:
    """Check the archive table: one chain from ``seq`` 1 up to the record before the audit
    table's first, ending at a signed archive mark, with every mark's record at its hash.

    Returns
    -------
    VerificationResult
        ``ok`` (0 records checked for a log never archived), or the first bad ``seq``.

    Raises
    ------
    adp.errors.AuditError
        When a table cannot be read.
    """
    marks = archive_marks(log.checkpoints)
    name = archive_table_name(log.table_name)
    store = log.store
    try:
        with store.engine.connect() as conn:
            first = conn.execute(sa.select(sa.func.min(store.table.c.seq))).scalar()
            exists = sa.inspect(conn).has_table(name)
    except sa.exc.SQLAlchemyError as exc:
        raise AuditError(f"cannot read the audit log {log.url}: {exc}") from exc
    through = 0 if first is None else int(first) - 1
    if through == 0:
        return VerificationResult(True, 0)
    if through not in marks:
        return VerificationResult(
            False, 0, through, f"no signed archive mark covers records 1..{through}"
        )
    if not exists:
        return VerificationResult(False, 0, 1, f"the archive table {name} is missing")
    table = build_table(name)
    query = sa.select(table).order_by(table.c.seq)
    records = (
        AuditRecord(**{**row, "seq": int(row["seq"])}) for row in store.rows(query, batch=1000)
    )
    anchors = {seq: h for seq, h in marks.items() if seq <= through}
    return verify_chain(records, (through, marks[through]), strict=True, anchors=anchors)


# -- archiving -------------------------------------------------------------------------------
def _span(store: AuditStore, cutoff: str) -> tuple[int | None, int | None]:
    """The first ``seq`` left in the table and the last one older than ``cutoff`` (the
    records between are due), or None for either."""
    col = store.table.c
    with store.engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(col.seq))).scalar()
        newer = conn.execute(sa.select(sa.func.min(col.seq)).where(col.time >= cutoff)).scalar()
        head = conn.execute(sa.select(sa.func.max(col.seq))).scalar()
    if first is None or head is None:
        return None, None
    through = int(head) if newer is None else int(newer) - 1
    return int(first), through if through >= int(first) else None


def archive_audit(
    log: ArchivableLog,
    *,
    days: float | None = None,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    identity: str | None = None,
    source: str = "cli",
) -> AuditArchive:
    """Move the audit records older than ``days`` into ``<table>_archive``.

    In order: verify the log (strict: a log that does not verify is not archived, so no
    tampering is laundered into the archive); append a ``started`` ``retention.audit``
    record naming the records and boundary; then, in one write transaction, sign the
    archive mark of the boundary (the last record moved and its hash), copy the records to
    the archive table and delete them from the audit table; finally record the outcome. A
    run with nothing due changes and records nothing, so running twice is harmless.

    Parameters
    ----------
    log : AuditLog
        A writable audit log (:class:`adp.observe.audit.AuditLog`).
    days : float, optional
        Records older than this many days move. Default ``adp.retention.audit-days``; when
        that is null too, nothing moves.
    now : datetime, optional
        The time ``days`` counts back from (default: now, UTC).
    dry_run : bool, default False
        Only report what would move.
    identity : str, optional
        Who runs it, for the audit record (default: the operating-system user).
    source : str, default "cli"
        The component, for the audit record.

    Returns
    -------
    AuditArchive

    Raises
    ------
    adp.errors.AuditError
        When the log does not verify, the archive cannot be written, or the log changed
        under the run.
    adp.errors.ConfigError
        When ``<table>_archive`` is not a valid table name.
    """
    from adp.config import settings

    days = settings().retention.audit_days if days is None else days
    name = archive_table_name(log.table_name)
    if days is None:
        return AuditArchive(0, None, None, name, None, dry_run)
    moment = dt.datetime.now(dt.UTC) if now is None else now
    cutoff = utc_iso(moment - dt.timedelta(days=days))
    first, through = _span(log.store, cutoff)
    if first is None or through is None:
        return AuditArchive(0, None, None, name, cutoff, dry_run)
    due = AuditArchive(through - first + 1, first, through, name, cutoff, dry_run)
    if dry_run:
        return due
    verified = log.verify(strict=True)
    if not verified.ok:
        where = "checkpoint" if verified.first_bad_seq is None else f"seq {verified.first_bad_seq}"
        raise AuditError(
            f"the audit log {log.url} does not verify (at {where}: {verified.reason}); "
            "not archiving it: run `adp audit verify` and investigate"
        )
    archive = log.store.create_archive(name)
    details = {
        "records": due.moved,
        "first_seq": first,
        "through_seq": through,
        "archive_table": name,
        "cutoff": cutoff,
    }
    with audited(
        log,
        EVENT,
        action="archive",
        resource=f"audit:{log.table_name}",
        details=details,
        identity=identity,
        source=source,
    ) as started:
        moved = _move(log, archive, through)
        if moved != due.moved:
            raise AuditError(
                f"archived {moved} audit records but {due.moved} were due (seq {first}.."
                f"{through}): the log changed during the run"
            )
    return AuditArchive(moved, first, through, name, cutoff, False, started.seq)


def _move(log: ArchivableLog, archive: sa.Table, through: int) -> int:
    """Sign the boundary's mark, then move records up to ``through``, in one transaction."""
    store, checkpoints = log.store, log.checkpoints
    col = store.table.c
    with checkpoints.locked(), store.write() as conn:
        boundary = conn.execute(sa.select(col.hash).where(col.seq == through)).scalar()
        after = conn.execute(sa.select(col.prev_hash).where(col.seq == through + 1)).scalar()
        if boundary is None or after != boundary:
            raise AuditError(
                f"the audit log {log.url} changed around seq {through} since it was verified; "
                "not archiving it: run `adp audit verify`"
            )
        sign_archive_mark(checkpoints, through, str(boundary), utc_iso())
        return store.move(conn, archive, through)

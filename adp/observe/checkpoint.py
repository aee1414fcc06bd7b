"""Signed checkpoints of an audit chain's head, kept outside the database.

*Identity.* A checkpoint names its log by the database's own identity, not by how its URL
is spelled: a random id stored in the database itself (table ``adp_audit_identity``, one
row per audit table) when the log is created (:func:`log_identity`). ``127.0.0.1`` and
``localhost``, or two spellings of one SQLite path, reach the same checkpoints.

*Signature.* Each checkpoint ``(log id, seq, hash, time)`` is signed with Ed25519
(:mod:`adp.observe.signing`): writers hold the private key, verifiers only the public one.

*Where.* The checkpoint file (``<state-dir>/audit.checkpoint``, JSON) holds the latest
checkpoint of each log this host wrote; when ``adp.audit.anchor`` is set every checkpoint is
also written to that second store (:mod:`adp.observe.anchor`). Someone who can rewrite the
database but not these cannot move a checkpoint, so a truncated tail, a rewrite and an
appended record are all detected.

Writers hold an exclusive ``flock`` on ``audit.checkpoint.lock`` around "read checkpoint,
append, advance checkpoint", so the file only moves forward and never tears (it is replaced
atomically with ``os.replace``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from adp.db import write_transaction
from adp.errors import AuditError
from adp.observe.signing import Signer, Verifier

if TYPE_CHECKING:  # pragma: no cover
    from adp.observe.anchor import Anchor

__all__ = [
    "IDENTITY_TABLE",
    "Checkpoint",
    "anchored_heads",
    "CheckpointStore",
    "check_signed",
    "log_identity",
    "open_checkpoints",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "audit.checkpoint"
LOCK_FILE = "audit.checkpoint.lock"
#: Signed write intents (:meth:`CheckpointStore.intend`), one per log, beside the checkpoints.
INTENT_FILE = "audit.intent"
#: Signed before an intent's payload, so an intent can never pass for a checkpoint.
INTENT_PREFIX = b"adp-audit-intent:"
IDENTITY_TABLE = "adp_audit_identity"
"""The table (in the audit database) that holds each audit table's random log id."""


def _identity_table() -> sa.Table:
    return sa.Table(
        IDENTITY_TABLE,
        sa.MetaData(),
        sa.Column("audit_table", sa.Text, primary_key=True),
        sa.Column("log_id", sa.Text, nullable=False),
        sa.Column("created", sa.Text, nullable=False),
    )


def log_identity(engine: Engine, table: str, *, create: bool) -> str | None:
    """The random id of the audit log in ``table``, stored in the database itself.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The audit database.
    table : str
        The audit table's (checked) name.
    create : bool
        Create the identity (and its table) when missing; otherwise a missing identity is
        ``None`` (a log from before identities, or one whose identity was removed: its
        records are then covered by no checkpoint).

    Raises
    ------
    adp.errors.AuditError
        When the database cannot be read or written.
    """
    from adp.observe.records import utc_iso

    ident = _identity_table()
    query = sa.select(ident.c.log_id).where(ident.c.audit_table == table)
    try:
        with engine.connect() as conn:
            if sa.inspect(conn).has_table(IDENTITY_TABLE):
                found = conn.execute(query).scalar()
                if found is not None:
                    return str(found)
        if not create:
            return None
        try:
            with write_transaction(engine) as conn:
                ident.metadata.create_all(conn, checkfirst=True)
                found = conn.execute(query).scalar()
                if found is None:
                    found = uuid.uuid4().hex
                    conn.execute(
                        sa.insert(ident).values(audit_table=table, log_id=found, created=utc_iso())
                    )
            return str(found)
        except IntegrityError:  # another process created it first
            with engine.connect() as conn:
                return str(conn.execute(query).scalar_one())
    except SQLAlchemyError as exc:
        raise AuditError(f"cannot read the identity of audit table {table!r}: {exc}") from exc


@dataclass(frozen=True)
class Checkpoint:
    """A signed claim that record ``seq`` of log ``log_id`` had hash ``hash``."""

    log_id: str
    seq: int
    hash: str
    time: str

    def payload(self) -> bytes:
        """Canonical bytes the signature covers."""
        body = {"log": self.log_id, "seq": self.seq, "hash": self.hash, "time": self.time}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def signed(self, signer: Signer) -> dict[str, Any]:
        """The checkpoint as stored: its fields, the signature and the signing key's id."""
        return {
            "log": self.log_id,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "sig": signer.sign(self.payload()),
            "key": signer.key_id,
        }


def check_signed(entry: Mapping[str, Any], verifier: Verifier | None, where: str) -> Checkpoint:
    """The :class:`Checkpoint` in a stored ``entry`` after checking its signature.

    Raises
    ------
    adp.errors.AuditError
        When the entry is malformed, there is no public key, or the signature fails.
    """
    try:
        cp = Checkpoint(
            str(entry["log"]), int(entry["seq"]), str(entry["hash"]), str(entry["time"])
        )
        signature, signer_id = str(entry["sig"]), str(entry.get("key", "?"))
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"the audit checkpoint in {where} is malformed: {exc!r}") from exc
    if verifier is None:
        raise AuditError(
            f"cannot check the audit checkpoint in {where}: no public key; set "
            "adp.audit.public-key (or restore the state directory's audit.ed25519.pub)"
        )
    if not verifier.verify(cp.payload(), signature):
        other = "" if signer_id == verifier.key_id else f" (signed by key {signer_id})"
        raise AuditError(
            f"the audit checkpoint at seq {cp.seq} in {where} fails its Ed25519 signature "
            f"under public key {verifier.key_id}{other}: it was altered or forged"
        )
    return cp


class AnchorWriter(Protocol):
    """Where checkpoints are exported as they advance (:class:`adp.observe.anchor.Anchor`)."""

    def put(self, entry: Mapping[str, Any]) -> None: ...


class CheckpointStore:
    """The checkpoint file of one state directory, seen from one audit log.

    Parameters
    ----------
    state_dir : Path
        Where ``audit.checkpoint`` and its lock file live.
    log_id : str or None
        The log's identity (:func:`log_identity`); ``None`` for a log without one, which has
        no checkpoint.
    signer : Signer or None
        The private key; ``None`` for a read-only view (:meth:`advance` then fails).
    verifier : Verifier or None
        The public key; ``None`` makes any existing checkpoint fail to verify.
    anchor : AnchorWriter, optional
        A second store every advanced checkpoint is also written to.
    location : str, optional
        The log's URL (without password) and table. Stored beside each checkpoint only to
        notice a log *replaced* at the same location (its identity removed with its
        records): checkpoints are found by identity, never by location.
    """

    def __init__(
        self,
        state_dir: Path,
        log_id: str | None,
        signer: Signer | None,
        verifier: Verifier | None,
        anchor: AnchorWriter | None = None,
        location: str | None = None,
    ) -> None:
        self.location = location
        self.state_dir = state_dir
        self.path = state_dir / CHECKPOINT_FILE
        self.log_id = log_id
        self.signer = signer
        self.verifier = verifier
        self.anchor = anchor

    @contextlib.contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[CheckpointStore]:
        """Hold the checkpoint lock (exclusive for writers, shared for readers)."""
        if shared and not self.state_dir.is_dir():  # a verifier elsewhere: nothing to lock
            yield self
            return
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(
                f"cannot open the audit checkpoint lock in {self.state_dir}: {exc}"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield self
        finally:
            os.close(fd)  # releases the lock

    def _load_all(self) -> dict[str, Any]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AuditError(f"cannot read the audit checkpoint file {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
            logs = data["logs"]
            if not isinstance(logs, dict):
                raise TypeError("'logs' is not an object")
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(
                f"the audit checkpoint file {self.path} is malformed ({exc}); it was altered: "
                "investigate, then move it aside to start new checkpoints"
            ) from exc
        return logs

    def read(self) -> Checkpoint | None:
        """Return this log's checkpoint, or ``None`` when there is none yet.

        Raises
        ------
        AuditError
            When the file is malformed, the entry's signature does not verify, or it
            names another log.
        """
        logs = self._load_all()
        entry = None if self.log_id is None else logs.get(self.log_id)
        if entry is None:
            self._check_not_replaced(logs)
            return None
        cp = check_signed(entry, self.verifier, str(self.path))
        if cp.log_id != self.log_id:
            raise AuditError(
                f"the audit checkpoint for log {self.log_id} in {self.path} names log "
                f"{cp.log_id}: the file was altered"
            )
        return cp

    def _check_not_replaced(self, logs: Mapping[str, Any]) -> None:
        """Refuse a log without a checkpoint here when this state directory signed another
        log at the same location: the log was replaced (records and identity removed)."""
        if self.location is None:
            return
        now = "no log identity" if self.log_id is None else f"log {self.log_id}"
        for other, entry in logs.items():
            if (
                other != self.log_id
                and isinstance(entry, Mapping)
                and entry.get("at") == (self.location)
            ):
                cp = check_signed(entry, self.verifier, str(self.path))
                raise AuditError(
                    f"the audit log at {self.location} was replaced: this state directory "
                    f"signed log {other} there up to seq {cp.seq}, but the database now holds "
                    f"{now}: its records and identity were removed. Investigate before writing"
                )

    def entry(self) -> dict[str, Any] | None:
        """This log's signed checkpoint as stored (for export to an anchor), after checking
        its signature; ``None`` when there is none.

        Raises
        ------
        AuditError
            As for :meth:`read`.
        """
        if self.read() is None or self.log_id is None:
            return None
        return dict(self._load_all()[self.log_id])

    def intend(self, seq: int, hash_: str, time: str) -> None:
        """Sign ``(seq, hash_)`` as the record about to be committed (a write intent).

        Written, under :meth:`locked`, after the record is inserted and before its
        transaction commits. A writer killed between the commit and :meth:`advance` leaves
        one record no checkpoint covers; its signed intent proves the record is the
        writer's own, so the next append (and ``verify``) accept it instead of refusing the
        log for good. An intent for a record that never committed matches nothing.
        """
        if self.signer is None or self.log_id is None:
            raise AuditError(
                f"cannot sign audit write intents in {self.state_dir}: no signing key or log "
                "identity (the log was opened read-only)"
            )
        intents = self._load_intents()
        entry = Checkpoint(self.log_id, seq, hash_, time)
        intents[self.log_id] = {
            **entry.signed(self.signer),
            "sig": self.signer.sign(INTENT_PREFIX + entry.payload()),
        }
        _write_private(self.state_dir / INTENT_FILE, {"version": 1, "intents": intents})

    def intent(self) -> Checkpoint | None:
        """This log's signed write intent, verified; ``None`` when there is none (or it does
        not verify: an intent is only ever extra evidence, never required)."""
        entry = None if self.log_id is None else self._load_intents().get(self.log_id)
        if entry is None or self.verifier is None:
            return None
        try:
            cp = Checkpoint(
                str(entry["log"]), int(entry["seq"]), str(entry["hash"]), str(entry["time"])
            )
            ok = self.verifier.verify(INTENT_PREFIX + cp.payload(), str(entry["sig"]))
        except (KeyError, TypeError, ValueError):
            return None
        return cp if ok and cp.log_id == self.log_id else None

    def _load_intents(self) -> dict[str, Any]:
        try:
            data = json.loads((self.state_dir / INTENT_FILE).read_text())
            intents = data["intents"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return intents if isinstance(intents, dict) else {}

    def advance(self, seq: int, hash_: str, time: str) -> None:
        """Sign ``(seq, hash_)`` as the head if it is past the current checkpoint, write it
        to the checkpoint file and to the anchor (when configured).

        Call while holding :meth:`locked` (exclusive).

        Raises
        ------
        AuditError
            When there is no signing key or identity, or the file or anchor cannot be
            written.
        """
        if self.signer is None or self.log_id is None:
            raise AuditError(
                f"cannot sign audit checkpoints in {self.state_dir}: no signing key or log "
                "identity (the log was opened read-only)"
            )
        logs = self._load_all()
        current = logs.get(self.log_id)
        if current is not None and int(current.get("seq", 0)) >= seq:
            return
        entry = Checkpoint(self.log_id, seq, hash_, time).signed(self.signer)
        logs[self.log_id] = {**entry, "at": self.location} if self.location else entry
        _write_private(self.path, {"version": 2, "logs": logs})
        if self.anchor is not None:
            self.anchor.put(entry)


def _write_private(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (0600, fsynced, then renamed)."""
    text = json.dumps(data, sort_keys=True, indent=1)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise AuditError(f"cannot write the audit checkpoint {path}: {exc}") from exc


def open_checkpoints(
    engine: Engine, table: str, state_dir: Path, *, create: bool, anchor_uri: str | None = None
) -> CheckpointStore:
    """The :class:`CheckpointStore` of the audit log in ``table``, with its identity, keys
    and anchor from the configuration (``adp.audit.signing-key``, ``public-key``,
    ``anchor``, ``anchor-storage-options``).

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The audit database.
    table : str
        The audit table.
    state_dir : Path
        ADP's state directory.
    create : bool
        A writer (create the identity and the signing key) or a read-only verifier.
    anchor_uri : str, optional
        Overrides ``adp.audit.anchor``.

    Raises
    ------
    adp.errors.AuditError
        When the identity, keys or anchor cannot be read or created.
    """
    from adp.config import settings
    from adp.observe.signing import load_signer, load_verifier

    cfg = settings().audit
    log_id = log_identity(engine, table, create=create)
    signer = load_signer(state_dir, cfg.signing_key, create=create)
    verifier = load_verifier(state_dir, cfg.public_key, cfg.signing_key)
    if signer is not None and verifier is not None and verifier.key_id != signer.key_id:
        raise AuditError(
            f"the audit signing key {signer.source} does not match the public key "
            f"{verifier.source}: fix adp.audit.signing-key / adp.audit.public-key"
        )
    anchor = None
    uri = anchor_uri or cfg.anchor
    if uri and create:
        from adp.observe.anchor import Anchor

        anchor = Anchor(uri, cfg.anchor_storage_options)
    location = f"{engine.url.render_as_string(hide_password=True)}#{table}"
    return CheckpointStore(state_dir, log_id, signer, verifier, anchor, location)


def anchored_heads(anchor: Anchor, log_id: str | None, verifier: Verifier | None) -> dict[int, str]:
    """The verified ``{seq: hash}`` checkpoints ``anchor`` holds for ``log_id``.

    Raises
    ------
    adp.errors.AuditError
        When the log has no identity or no checkpoint in the anchor (naming the logs it
        does hold), a checkpoint's signature fails, it names another log, or two disagree.
    """
    if log_id is None:
        raise AuditError(
            "the audit log has no identity in its database (table adp_audit_identity): it "
            f"was removed or replaced, so no checkpoint in {anchor.shown} can cover it"
        )
    entries = anchor.entries(log_id)
    if not entries:
        held = anchor.logs()
        shown = ", ".join(held[:5]) + (f" ... and {len(held) - 5} more" if len(held) > 5 else "")
        raise AuditError(
            f"the anchor {anchor.shown} holds no checkpoint for this audit log (id {log_id}); "
            f"it holds checkpoints for: {shown or 'no log'}. The log's identity was replaced, "
            "or it was never anchored (run `adp audit anchor --to URI`)"
        )
    heads: dict[int, str] = {}
    for entry in entries:
        cp = check_signed(entry, verifier, anchor.shown)
        if cp.log_id != log_id:
            raise AuditError(
                f"the checkpoint at seq {cp.seq} in {anchor.shown} names log {cp.log_id}, "
                f"not {log_id}: it was moved"
            )
        if heads.get(cp.seq, cp.hash) != cp.hash:
            raise AuditError(f"the anchor {anchor.shown} holds two checkpoints for seq {cp.seq}")
        heads[cp.seq] = cp.hash
    return heads

"""HMAC-signed checkpoints of an audit chain's head, kept outside the database.

The checkpoint file (``<state-dir>/audit.checkpoint``, JSON) holds, for each audit log (its
URL without password, plus the table name), the head ``(seq, hash)`` after the last append
from this host, signed with HMAC-SHA256 under the checkpoint key. The key comes from
``adp.audit.checkpoint-key`` or, when that is null, from ``<state-dir>/audit.key``: 32 random
bytes created once with mode 0600. Someone who can rewrite the database but not the state
directory cannot move a checkpoint back, so a truncated tail is detected.

Writers hold an exclusive ``flock`` on ``audit.checkpoint.lock`` around "read checkpoint,
append, advance checkpoint", so the file only moves forward and never tears (it is replaced
atomically with ``os.replace``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adp.errors import AuditError

__all__ = ["Checkpoint", "CheckpointStore", "load_key"]

logger = logging.getLogger(__name__)

KEY_FILE = "audit.key"
CHECKPOINT_FILE = "audit.checkpoint"
LOCK_FILE = "audit.checkpoint.lock"


def load_key(
    state_dir: Path, configured: str | None = None, *, create: bool = True
) -> bytes | None:
    """Return the checkpoint HMAC key, creating ``<state_dir>/audit.key`` on first use.

    Parameters
    ----------
    state_dir : Path
        ADP's state directory (``adp.state-dir``).
    configured : str, optional
        The ``adp.audit.checkpoint-key`` setting; when given it is the key and no file is used.
    create : bool, default True
        Create the key file when missing; with ``False`` a missing key gives ``None``.

    Returns
    -------
    bytes or None
        The key (``None`` only when it does not exist and ``create`` is false).

    Raises
    ------
    AuditError
        When the key file cannot be created or read, or is empty.
    """
    if configured:
        return configured.encode()
    path = state_dir / KEY_FILE
    if not create and not path.exists():
        return None
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create_key_file(path)
        key = path.read_text().strip()
        mode = path.stat().st_mode & 0o777
    except OSError as exc:
        raise AuditError(
            f"cannot read or create the audit checkpoint key {path}: {exc}; "
            "fix the permissions of adp.state-dir or set adp.audit.checkpoint-key"
        ) from exc
    if not key:
        raise AuditError(f"the audit checkpoint key file {path} is empty; restore it")
    if mode & 0o077:
        logger.warning("audit checkpoint key %s is readable by others (mode %o)", path, mode)
    return key.encode()


def _create_key_file(path: Path) -> None:
    """Create the key file atomically: a 0600 temp file hard-linked into place."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".audit.key.")
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):  # another process won the race
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


@dataclass(frozen=True)
class Checkpoint:
    """A signed claim that record ``seq`` of log ``log_id`` had hash ``hash``."""

    log_id: str
    seq: int
    hash: str
    time: str

    def payload(self) -> bytes:
        """Canonical bytes the MAC covers."""
        body = {"log": self.log_id, "seq": self.seq, "hash": self.hash, "time": self.time}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class CheckpointStore:
    """The checkpoint file of one state directory, seen from one audit log.

    Parameters
    ----------
    state_dir : Path
        Where ``audit.checkpoint`` and its lock file live.
    key : bytes or None
        The HMAC key (see :func:`load_key`); ``None`` for a read-only view without a key,
        which fails on any existing checkpoint.
    log_id : str
        Identifies the audit log (URL without password and table name).
    """

    def __init__(self, state_dir: Path, key: bytes | None, log_id: str) -> None:
        self.state_dir = state_dir
        self.path = state_dir / CHECKPOINT_FILE
        self._key = key
        self.log_id = log_id

    def _mac(self, cp: Checkpoint) -> str:
        if self._key is None:
            raise AuditError(
                f"the audit checkpoint key is missing from {self.state_dir}: restore "
                f"{KEY_FILE} or set adp.audit.checkpoint-key"
            )
        return hmac.new(self._key, cp.payload(), hashlib.sha256).hexdigest()

    @contextlib.contextmanager
    def locked(self, *, shared: bool = False) -> Iterator[CheckpointStore]:
        """Hold the checkpoint lock (exclusive for writers, shared for readers)."""
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
            When the file is malformed or the entry's signature does not verify.
        """
        entry = self._load_all().get(self.log_id)
        if entry is None:
            return None
        try:
            cp = Checkpoint(self.log_id, int(entry["seq"]), str(entry["hash"]), str(entry["time"]))
            mac = str(entry["mac"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AuditError(f"the audit checkpoint for {self.log_id} is malformed: {exc}") from exc
        if not hmac.compare_digest(mac, self._mac(cp)):
            raise AuditError(
                f"the audit checkpoint for {self.log_id} in {self.path} fails its HMAC: the "
                "file was altered or the checkpoint key changed"
            )
        return cp

    def advance(self, seq: int, hash_: str, time: str) -> None:
        """Record ``(seq, hash_)`` as the head if it is past the current checkpoint.

        Call while holding :meth:`locked` (exclusive).
        """
        logs = self._load_all()
        current = logs.get(self.log_id)
        if current is not None and int(current.get("seq", 0)) >= seq:
            return
        cp = Checkpoint(self.log_id, seq, hash_, time)
        logs[self.log_id] = {"seq": seq, "hash": hash_, "time": time, "mac": self._mac(cp)}
        text = json.dumps({"version": 1, "logs": logs}, sort_keys=True, indent=1)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.state_dir, prefix=".audit.checkpoint.")
            try:
                os.fchmod(fd, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise AuditError(f"cannot write the audit checkpoint {self.path}: {exc}") from exc

"""Audit records, their canonical hash, and the chain check (pure: no I/O).

See :mod:`adp.observe.audit` for the design; this module holds the parts that need no
database, so they can be tested and reused on their own.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from adp.errors import AuditVerificationError, ConfigError

__all__ = [
    "FIELDS",
    "GENESIS_HASH",
    "OUTCOMES",
    "AuditRecord",
    "VerificationResult",
    "parse_since",
    "record_hash",
    "redact_fields",
    "utc_iso",
    "verify_chain",
]

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first record."""

OUTCOMES: tuple[str, ...] = (
    "started",
    "success",
    "failure",
    "denied",
    "interrupted",
    "cancelled",
)
"""Valid ``outcome`` values; ``started`` opens an :func:`audited` action; ``interrupted``
closes one stopped by a signal, or whose owner process is gone."""

FIELDS: tuple[str, ...] = (
    "seq",
    "event_type",
    "time",
    "where",
    "source",
    "outcome",
    "identity",
    "resource",
    "action",
    "reason",
    "job_id",
    "details",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class AuditRecord:
    """One audit record, as stored; ``details`` is JSON text (see :meth:`details_data`)."""

    seq: int
    event_type: str
    time: str
    where: str
    source: str
    outcome: str
    identity: str
    resource: str | None
    action: str
    reason: str | None
    job_id: str | None
    details: str | None
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Return the record's fields as a dictionary (stored form)."""
        return asdict(self)

    def details_data(self) -> Any:
        """Return ``details`` decoded from JSON (``None`` when absent)."""
        return None if self.details is None else json.loads(self.details)


def record_hash(fields: Mapping[str, Any]) -> str:
    """Return the SHA-256 hex digest of a record's canonical JSON (all fields but ``hash``).

    Parameters
    ----------
    fields : Mapping[str, Any]
        The record's fields; ``hash`` is ignored if present.
    """
    body = {name: fields[name] for name in FIELDS if name != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerificationResult:
    """The outcome of :meth:`AuditLog.verify`; true in a boolean context when ``ok``.

    Attributes
    ----------
    ok : bool
        Whether the chain and its checkpoint verify.
    records_checked : int
        Records that passed before the first failure (all of them when ``ok``).
    first_bad_seq : int or None
        The first sequence number at fault (missing, changed, inserted, or cut off).
    reason : str or None
        Why verification failed, in words.
    head_seq : int
        The last sequence number read from the database (0 for an empty log).
    checkpoint_seq : int or None
        The signed checkpoint's sequence number, if this host has one for the log.
    unanchored : int
        Records after the checkpoint (not covered by a signature).
    """

    ok: bool
    records_checked: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head_seq: int = 0
    checkpoint_seq: int | None = None
    unanchored: int = 0

    def __bool__(self) -> bool:
        return self.ok

    def raise_if_failed(self) -> None:
        """Raise :class:`~adp.errors.AuditVerificationError` naming the first bad seq."""
        if not self.ok:
            where = "checkpoint" if self.first_bad_seq is None else f"seq {self.first_bad_seq}"
            raise AuditVerificationError(f"audit trail fails at {where}: {self.reason}")


def utc_iso(moment: datetime | None = None) -> str:
    moment = datetime.now(UTC) if moment is None else moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_since(since: datetime | str) -> str:
    if isinstance(since, str):
        try:
            since = datetime.fromisoformat(since)
        except ValueError as exc:
            raise ConfigError(
                f"since={since!r} is not an ISO 8601 time; use e.g. 2026-11-24T10:00:00Z"
            ) from exc
    return utc_iso(since)


def verify_chain(
    records: Iterable[AuditRecord],
    checkpoint: tuple[int, str] | None = None,
    *,
    strict: bool = True,
    anchors: Mapping[int, str] | None = None,
    start: tuple[int, str] | None = None,
) -> VerificationResult:
    """Check a chain read in ``seq`` order against its signed checkpoints.

    Parameters
    ----------
    records : iterable of AuditRecord
        Every record of the log, in ascending ``seq`` order.
    checkpoint : (seq, hash), optional
        The verified checkpoint of the chain head (the state directory's).
    strict : bool, default True
        Fail on records after the newest checkpoint (not covered by a signature) instead of
        counting them as unanchored.
    anchors : mapping of int to str, optional
        More verified checkpoints ``{seq: hash}`` (from an anchor): the record at each
        ``seq`` must have that hash, and the chain must reach the newest.
    start : (seq, hash), optional
        The chain starts after an archived prefix: its first record is ``seq + 1`` and
        links to ``hash`` (a verified archive mark, :mod:`adp.observe.retention`).

    Returns
    -------
    VerificationResult
        The first failure found, or ``ok``.
    """
    signed: dict[int, str] = dict(anchors or {})
    if checkpoint is not None:
        signed.setdefault(checkpoint[0], checkpoint[1])
    newest = cp_seq = max(signed) if signed else None
    base, prev = start if start is not None else (0, GENESIS_HASH)
    checked, expected = 0, base + 1
    prev2: str | None = None

    def bad(seq: int, reason: str) -> VerificationResult:
        return VerificationResult(False, checked, seq, reason, expected - 1, cp_seq)

    for rec in records:
        s = rec.seq
        if s != expected:
            return bad(
                expected,
                f"record {expected} is missing: the sequence goes from {expected - 1} to {s}",
            )
        if rec.prev_hash != prev:
            if prev2 is not None and rec.prev_hash == prev2:
                return bad(
                    s - 1, f"record {s - 1} was inserted: record {s} links to record {s - 2}"
                )
            if start is not None and s == base + 1:
                return bad(
                    s,
                    f"record {s} does not link to the archived record {base} (its signed "
                    "archive mark): records were changed or replaced",
                )
            return bad(
                s,
                f"record {s} does not link to record {s - 1} (prev_hash differs): records were "
                "changed, swapped or removed",
            )
        if record_hash(rec.to_dict()) != rec.hash:
            return bad(s, f"record {s} does not match its hash: it was changed")
        if s in signed and rec.hash != signed[s]:
            return bad(
                s, f"record {s} differs from the signed checkpoint: the log was rewritten up to it"
            )
        checked += 1
        expected += 1
        prev2, prev = prev, rec.hash
    head = expected - 1
    if newest is not None and head < newest:
        return bad(
            head + 1,
            f"records {head + 1}..{newest} are missing: the log ends at {head} but the signed "
            f"checkpoint is at {newest} (tail truncated)",
        )
    unanchored = head - max(newest or 0, base)
    if strict and unanchored:
        first = max(newest or 0, base) + 1
        return VerificationResult(
            False,
            checked,
            first,
            f"records {first}..{head} are not covered by a signed checkpoint: inserted "
            "without the signing key, written by another host, or after a crash",
            head,
            cp_seq,
            unanchored,
        )
    return VerificationResult(True, checked, None, None, head, cp_seq, unanchored)


def redact_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A record's fields with secrets removed before they are hashed and stored: passwords in
    ``resource`` and in URLs inside ``reason`` become ``***``, and so do the values of
    secret keys and every URL's password inside ``details`` (see :mod:`adp.redact`)."""
    from adp.redact import redact_text, redact_url, redact_value

    out = dict(fields)
    out["resource"] = redact_url(out.get("resource"))
    out["reason"] = redact_text(out.get("reason"))
    details = out.get("details")
    if isinstance(details, str):
        try:
            data = json.loads(details)
        except ValueError:
            out["details"] = redact_text(details)
        else:
            out["details"] = json.dumps(
                redact_value(data), sort_keys=True, separators=(",", ":"), default=str
            )
    return out

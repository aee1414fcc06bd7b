"""Running a block only when its audit record is written: the :func:`audited` context manager.

The client-side half of the audit contract: an action whose ``started`` record cannot be
written does not run, and its outcome (``success``, ``failure`` or ``denied``) is recorded
after it (``interrupted`` when a signal stopped it), linked to the ``started`` record by
``details.started_seq``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any, Protocol

from adp.errors import AuditError
from adp.observe.records import AuditRecord

__all__ = ["audited"]

logger = logging.getLogger(__name__)


class AuditAppender(Protocol):
    """What :func:`audited` needs of a log: :meth:`adp.observe.audit.AuditLog.append`."""

    def append(
        self,
        event_type: str,
        *,
        action: str,
        resource: str | None = ...,
        outcome: str = ...,
        reason: str | None = ...,
        job_id: str | None = ...,
        details: Any = ...,
        identity: str | None = ...,
        source: str = ...,
    ) -> AuditRecord: ...


def _count(client: Any, **figures: float) -> None:
    if client is None or getattr(client, "status", "running") != "running":
        return  # a client reconnecting to a lost scheduler would wait out the reconnection
    from adp.observe.events import report_client

    try:
        report_client(client, **figures)
    except Exception:  # metrics must never break the audited action
        logger.debug("could not report audit figures", exc_info=True)


def _ending(exc: BaseException, link: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """The outcome, reason and details of a block that raised ``exc``.

    A :class:`KeyboardInterrupt` (Ctrl-C, or :class:`adp.jobs.interrupts.JobInterrupted`
    for SIGTERM and SIGHUP, which carries ``signal_name``) is ``interrupted``, with the
    signal in the details; a :class:`PermissionError` is ``denied``; anything else is a
    ``failure``.
    """
    if isinstance(exc, KeyboardInterrupt):
        name = str(getattr(exc, "signal_name", "SIGINT"))
        reason = str(exc) or f"interrupted by {name}"
        outcome = str(getattr(exc, "outcome", "interrupted"))  # a cancel: "cancelled"
        return outcome, reason[:4000], {**link, "signal": name}
    outcome = "denied" if isinstance(exc, PermissionError) else "failure"
    return outcome, f"{type(exc).__name__}: {exc}"[:4000], link


@contextlib.contextmanager
def audited(
    log: AuditAppender,
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
    ``failure`` (``denied`` for a :class:`PermissionError`, ``interrupted`` with the
    signal's name for a :class:`KeyboardInterrupt`) record with the exception as the
    reason; the exception then propagates.

    Parameters
    ----------
    log : AuditLog
        Where to write (:class:`adp.observe.audit.AuditLog`, or anything with its
        ``append``).
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
        outcome, reason, details = _ending(exc, link)
        try:
            log.append(event_type, outcome=outcome, reason=reason, details=details, **common)
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

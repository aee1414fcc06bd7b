"""Closing the audit records of jobs whose client died: ``started`` with no outcome.

A client killed outright (SIGKILL, the OOM killer, a lost machine) cannot write its job's
outcome, so the audit trail would show the job ``started`` forever. Each job's ``started``
record names its *owner*, :func:`process_owner`: the host, the process id and the process's
start time (a reused pid has another start time). :func:`close_orphaned_jobs` appends the
missing outcome, ``interrupted`` with the reason ``"owner process gone"``, for every such
record whose owner ran on this host and is gone; jobs owned by another host, or whose owner
is alive, are left alone. :func:`adp.jobs.runner.run_job` calls it before each job, and
``adp clean`` may call it too.

Closing is exactly-once: several processes (or threads) may close orphans at the same time,
each having read the same unfinished jobs, but the audit log appends a job's outcome only if
the job has none yet, checked in the append's own write transaction
(``AuditLog.append(..., once=True)``); the others get :class:`OutcomeExists` and move on.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from adp.observe.audited import AuditAppender
from adp.observe.records import AuditRecord

__all__ = [
    "ORPHAN_REASON",
    "OutcomeExists",
    "Owner",
    "close_orphaned_jobs",
    "owner_gone",
    "process_owner",
]

logger = logging.getLogger(__name__)

ORPHAN_REASON = "owner process gone"
"""The ``reason`` of the ``interrupted`` record that closes an orphaned job."""

_JOB_EVENT = "job.run"
_START_TOLERANCE = 0.5  # seconds: psutil's start times of one process agree far closer
_WHERE = re.compile(r"^(?P<host>.+)/pid:(?P<pid>\d+)$")


class OutcomeExists(Exception):
    """The job already has an outcome: ``AuditLog.append(..., once=True)`` appended nothing.

    Not an error: another writer closed the job first.
    """


class _Trail(AuditAppender, Protocol):
    """What closing needs of :class:`adp.observe.audit.AuditLog`."""

    def unfinished(self, event_type: str) -> list[AuditRecord]: ...

    def append(  # what AuditAppender asks, and once=True
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
        once: bool = ...,
    ) -> AuditRecord: ...


@dataclass(frozen=True)
class Owner:
    """The process that runs a job: host name, process id and start time (epoch seconds).

    ``started`` is ``None`` for records written before owners were recorded (their
    ``where`` field gives host and pid only).
    """

    host: str
    pid: int
    started: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The owner as stored in a record's details."""
        return {"host": self.host, "pid": self.pid, "started": self.started}

    @classmethod
    def of(cls, record: AuditRecord) -> Owner | None:
        """The owner a record names: ``details.owner``, else its ``where`` field."""
        try:
            details = record.details_data()
        except ValueError:
            details = None
        owner = details.get("owner") if isinstance(details, dict) else None
        if isinstance(owner, dict):
            try:
                started = owner.get("started")
                return cls(
                    str(owner["host"]),
                    int(owner["pid"]),
                    None if started is None else float(started),
                )
            except (KeyError, TypeError, ValueError):
                return None
        match = _WHERE.match(record.where or "")
        return cls(match["host"], int(match["pid"])) if match else None


def _start_time(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.Error:  # access denied and the like: it exists
        return float("nan")


def process_owner() -> Owner:
    """This process as a job's owner: host, pid and start time."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _start_time(pid))


def owner_gone(owner: Owner) -> bool:
    """Whether ``owner`` ran on this host and is no longer running (its pid is dead, or
    reused by a process that started at another time). An owner on another host is never
    called gone: this host cannot tell."""
    if owner.host != socket.gethostname():
        return False
    started = _start_time(owner.pid)
    if started is None:
        return True
    if owner.started is None or started != started:  # unknown start time: assume alive
        return False
    return abs(started - owner.started) > _START_TOLERANCE


def close_orphaned_jobs(log: _Trail, *, source: str = "api") -> int:
    """Close the audit records of jobs ``started`` whose owner process is gone.

    For each ``job.run`` record with outcome ``started``, no outcome after it, and an owner
    on this host that is gone (see :func:`owner_gone`), append a ``job.run`` record with
    outcome ``interrupted``, reason :data:`ORPHAN_REASON`, and details linking the
    ``started`` record and naming the owner. Each job is closed once, whoever else closes
    orphans at the same time.

    Parameters
    ----------
    log : AuditLog
        The audit trail to close jobs in.
    source : str, default "api"
        The component that closes them (``"cli"`` for ``adp run`` or ``adp clean``).

    Returns
    -------
    int
        How many jobs this call closed (not those another writer closed first).

    Raises
    ------
    adp.errors.AuditError
        When the audit trail cannot be read or a closing record cannot be written.
    """
    closed = 0
    for started in log.unfinished(_JOB_EVENT):
        owner = Owner.of(started)
        if owner is None or not owner_gone(owner):
            continue
        try:
            log.append(
                started.event_type,
                action=started.action,
                resource=started.resource,
                outcome="interrupted",
                reason=ORPHAN_REASON,
                job_id=started.job_id,
                details={"started_seq": started.seq, "owner": owner.to_dict()},
                source=source,
                once=True,
            )
        except OutcomeExists:  # closed by another writer since unfinished() read it
            continue
        closed += 1
        logger.info("closed the audit record of job %s: %s", started.job_id, ORPHAN_REASON)
    return closed

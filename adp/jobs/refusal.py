"""A job refused before it starts: the one error the user reads, and its one audit record.

A job that fails its spec, its pre-flight or its output's guard never reaches a cluster,
but the audit trail still shows it: exactly one ``job.refused`` record with outcome
``failure`` whose reason is the one-line error ``adp`` printed (:func:`record_refusal`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.clitools import MESSAGE_LIMIT, translate_error
from adp.errors import AdpError, one_line
from adp.jobs.spec import JobSpec

if TYPE_CHECKING:
    from adp.observe.audit import AuditLog

#: Errors raised while reading data (the source is named); others name the output.
_READ_ERRORS = ("ParserError", "ArrowInvalid", "ArrowIOError", "ArrowException")


def job_error(exc: BaseException, spec: JobSpec) -> AdpError:
    """An ADP error for ``exc`` raised by ``spec``'s job: ADP's own errors unchanged, a
    parser error naming the source, a file system error naming its file or the output."""
    if isinstance(exc, AdpError):
        return exc
    reading = type(exc).__name__ in _READ_ERRORS or "pd.read_csv" in str(exc)
    if reading:
        return translate_error(exc, spec.source.uri)
    where = spec.output.uri if spec.output is not None else spec.source.uri
    return translate_error(exc, where)


def record_refusal(
    log: AuditLog,
    error: BaseException,
    *,
    resource: str,
    name: str | None = None,
    source: str = "cli",
    identity: str | None = None,
    job_id: str | None = None,
) -> None:
    """Append the one audit record of a job refused before it started: event
    ``job.refused``, action ``submit``, outcome ``failure``, and the one-line error (as
    the user sees it; :meth:`AuditLog.append` redacts secrets) as the reason.

    Parameters
    ----------
    log : AuditLog
        The audit trail.
    error : BaseException
        Why the job was refused.
    resource : str
        The job's source URI, or the spec file when the spec itself did not validate.
    name : str, optional
        The job's name, when the spec gave one.
    source : str, default "cli"
        The component that refused it (``"cli"``, ``"api"`` or ``"service"``).
    identity : str, optional
        Who submitted it (the verified caller); default the operating-system user.
    job_id : str, optional
        The job's id, when one was given to it (the service's).

    Notes
    -----
    When the record itself cannot be written, ``error`` still stands: the refused job
    did nothing, and the user's mistake is the more useful message.
    """
    reason = one_line(str(translate_error(error)), MESSAGE_LIMIT)
    try:
        log.append(
            "job.refused",
            action="submit",
            resource=resource,
            outcome="failure",
            reason=reason,
            details={"name": name, "error": type(error).__name__},
            source=source,
            identity=identity,
            job_id=job_id,
        )
    except Exception as exc:  # the audit store is broken: the refusal's error stands
        error.add_note(f"its audit record could not be written: {one_line(str(exc), 200)}")


__all__ = ["job_error", "record_refusal"]

"""Running a job from a terminal: pre-flight checks, progress bars, then the report and the
printed summary.

The pre-flight (:func:`adp.jobs.preflight.preflight`) runs before any cluster starts, so
a misspelt detector, a missing column or a dead endpoint fails in about a second. An
error that is not ADP's own (a parser error in a CSV cell, a full disk) is translated into
one line naming the source or output (:func:`job_error`). A report that fails after the
output was committed is a warning: the job did its work.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import click
from rich.console import Console

from adp.clitools import MESSAGE_LIMIT, debug_enabled, translate_error
from adp.errors import AdpError, one_line
from adp.jobs.preflight import report_target
from adp.jobs.runner import JobResult, run_job
from adp.jobs.spec import JobSpec

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


def run_and_report(
    spec: JobSpec,
    *,
    scheduler: str | None,
    report_path: Path | None,
    progress: bool,
    check: bool = True,
) -> JobResult:
    """Check ``spec`` (pre-flight), run it, write its HTML report (when asked for) and
    print the summary.

    Parameters
    ----------
    spec : JobSpec
        The validated job.
    scheduler : str, optional
        A scheduler address; overrides ``cluster.address`` in the spec.
    report_path : Path, optional
        Where the report goes; default the spec's ``report.path`` (or beside the output)
        when the spec has a ``report`` section, else no report.
    progress : bool
        Show a progress bar per stage.
    check : bool, default True
        Run the pre-flight checks first.

    Raises
    ------
    adp.errors.AdpError
        For anything that stops the job (translated to one line when it was not ADP's).
        A report that cannot be written after the output was committed is not an error:
        a warning is printed on standard error and ``report_path`` stays None.
    """
    from adp.jobs.preflight import preflight, with_io_timeouts
    from adp.jobs.report import write_report
    from adp.jobs.summary import print_summary

    target = report_target(spec, report_path)
    if check:
        preflight(spec, report_path=target)
    spec = with_io_timeouts(spec)
    console = Console(stderr=False)
    try:
        result = run_job(
            spec, scheduler=scheduler, show_progress=progress, console=console, origin="cli"
        )
    except Exception as exc:
        translated = job_error(exc, spec)
        if translated is exc:
            raise
        raise translated from exc
    if target is not None:
        try:
            result.report_path = str(write_report(result, target, spec.report, output=spec.output))
        except Exception as exc:
            if debug_enabled():
                traceback.print_exception(exc)
            reason = one_line(str(job_error(exc, spec)), MESSAGE_LIMIT)
            click.secho(
                f"warning: the output is committed, but the report {target} could not be "
                f"written: {reason}",
                fg="yellow",
                err=True,
            )
    print_summary(result, console)
    return result


__all__ = ["job_error", "run_and_report"]

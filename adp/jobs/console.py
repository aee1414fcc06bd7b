"""Running a job from a terminal: pre-flight checks, progress bars, then the report and the
printed summary.

The pre-flight (:func:`adp.jobs.preflight.preflight`) runs, once, in
:func:`adp.jobs.runner.run_job` before any cluster starts, so
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

from adp.clitools import MESSAGE_LIMIT, debug_enabled
from adp.errors import one_line
from adp.jobs.preflight import report_target
from adp.jobs.refusal import job_error
from adp.jobs.runner import JobResult, run_job
from adp.jobs.spec import JobSpec


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
        Run the pre-flight checks first (in :func:`~adp.jobs.runner.run_job`, once).

    Raises
    ------
    adp.errors.AdpError
        For anything that stops the job (translated to one line when it was not ADP's).
        A report that cannot be written after the output was committed is not an error:
        a warning is printed on standard error and ``report_path`` stays None.
    """
    from adp.jobs.preflight import with_io_timeouts
    from adp.jobs.report import write_report
    from adp.jobs.summary import print_summary

    target = report_target(spec, report_path)
    console = Console(stderr=False)
    try:
        # run_job runs the pre-flight (and audits a refusal) before any cluster starts
        result = run_job(
            spec,
            scheduler=scheduler,
            show_progress=progress,
            console=console,
            origin="cli",
            check=check,
            report_path=target,
        )
    except Exception as exc:
        translated = job_error(exc, spec)
        if translated is exc:
            raise
        raise translated from exc
    spec = with_io_timeouts(spec)
    if target is not None:
        try:
            result.report_path = str(
                write_report(result, target, spec.report, output=spec.output, source=spec.source)
            )
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

"""Running a job from a terminal: progress bars, then the report and the printed summary."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from adp.jobs.runner import JobResult, run_job
from adp.jobs.spec import JobSpec


def run_and_report(
    spec: JobSpec, *, scheduler: str | None, report_path: Path | None, progress: bool
) -> JobResult:
    """Run ``spec``, write its HTML report (when asked for) and print the summary.

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
    """
    from adp.jobs.report import write_report
    from adp.jobs.summary import print_summary

    console = Console(stderr=False)
    result = run_job(
        spec, scheduler=scheduler, show_progress=progress, console=console, origin="cli"
    )
    if report_path is None and spec.report is not None and spec.output is not None:
        report_path = Path(spec.report.path or f"{spec.output.uri.rstrip('/')}.report.html")
    if report_path is not None:
        result.report_path = str(write_report(result, report_path, spec.report))
    print_summary(result, console)
    return result


__all__ = ["run_and_report"]

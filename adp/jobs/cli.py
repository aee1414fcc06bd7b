"""The job commands: ``adp run``, ``adp validate``, ``adp demo`` and ``adp search``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from adp.clitools import fail_cleanly
from adp.jobs.spec import JobSpec


@click.command("run")
@click.argument("job", type=click.Path(path_type=Path))  # JobSpec.from_yaml names a bad file
@click.option("--scheduler", metavar="ADDRESS", help="Scheduler address (overrides the spec).")
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write the HTML report here."
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@fail_cleanly
def run(job: Path, scheduler: str | None, report_path: Path | None, progress: bool) -> None:
    """Run the job spec JOB (YAML): fit, score, threshold, write, report."""
    from adp.jobs.console import run_and_report

    spec = _spec_or_refusal(job)
    run_and_report(spec, scheduler=scheduler, report_path=report_path, progress=progress)


def _spec_or_refusal(job: Path) -> JobSpec:
    """The spec in ``job``; a spec that does not load or validate is a refused job, with
    its one audit record."""
    try:
        return JobSpec.from_yaml(job)
    except Exception as exc:
        from adp.jobs.refusal import record_refusal
        from adp.observe.audit import AuditLog

        try:
            log = AuditLog()
        except Exception as audit_exc:  # a broken audit store: the spec's error stands
            exc.add_note(f"its audit record could not be written: {audit_exc}")
            raise exc from None
        record_refusal(log, exc, resource=str(job.resolve()), source="cli")
        raise


@click.command("validate")
@click.argument("job", type=click.Path(path_type=Path))  # JobSpec.from_yaml names a bad file
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Check this report path."
)
@fail_cleanly
def validate(job: Path, report_path: Path | None) -> None:
    """Check the job spec JOB without a cluster: its fields and types, the detector and its
    parameters, the source and its columns, the output, the report path and credentials.

    Prints what was checked and exits 0, or prints one error and exits 1.
    """
    from adp.jobs.preflight import preflight, report_target

    spec = JobSpec.from_yaml(job)
    checked = preflight(spec, report_path=report_target(spec, report_path))
    for line in checked.checks:
        click.echo(f"  ok  {line}")
    click.echo(f"{job}: valid ({checked.seconds:.2f} s, no cluster started)")


@click.command("demo")
@click.option(
    "--data",
    "data_dir",
    default="data/demo-lake",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where to write the demo lake.",
)
@click.option(
    "--out",
    "out_dir",
    default="out/demo",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where the scores and the report go.",
)
@click.option("--sensors", default=50, show_default=True, help="Sensors in the fleet.")
@click.option("--days", default=14, show_default=True, help="Days of 5-minute readings.")
@click.option("--workers", default=2, show_default=True, help="Local worker processes.")
@click.option(
    "--scheduler", metavar="ADDRESS", help="Use this scheduler instead of a LocalCluster."
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@click.option(
    "--context/--no-context",
    default=True,
    show_default=True,
    help="Score each reading's residual from its sensor's daily profile (off: the raw readings).",
)
@fail_cleanly
def demo(
    data_dir: Path,
    out_dir: Path,
    sensors: int,
    days: int,
    workers: int,
    scheduler: str | None,
    progress: bool,
    context: bool,
) -> None:
    """Generate a sensor-fleet lake with injected anomalies, score it, and write a report."""
    from adp.jobs.demo import demo_spec, run_demo

    spec = demo_spec(data_dir, out_dir, workers=workers, context=context)
    run_demo(spec, sensors=sensors, days=days, scheduler=scheduler, progress=progress)


def _client(spec: JobSpec, scheduler: str | None) -> Any:
    from adp.cluster import cluster_for

    return cluster_for(
        scheduler or spec.cluster.address,
        n_workers=spec.cluster.n_workers,
        threads_per_worker=spec.cluster.threads_per_worker,
        memory_limit=spec.cluster.memory_limit,
        gateway=spec.cluster.gateway.model_dump(exclude_unset=True)
        if spec.cluster.gateway
        else None,
    )


@click.command("search")
@click.argument("job", type=click.Path(path_type=Path))  # JobSpec.from_yaml names a bad file
@click.option("--scheduler", metavar="ADDRESS", help="Scheduler address (overrides the spec).")
@click.option("--json", "as_json", is_flag=True, help="Print the leaderboard as JSON lines.")
@fail_cleanly
def search(job: Path, scheduler: str | None, as_json: bool) -> None:
    """Search detectors and hyperparameters as JOB's 'search:' section says.

    Prints the leaderboard, best first, and registers the winner when the section has
    'register: {name: ...}'.
    """
    from rich.console import Console

    from adp.jobs.preflight import preflight, with_io_timeouts
    from adp.jobs.search import run_search_job

    spec = _spec_or_refusal(job)
    if spec.search is None:
        raise click.UsageError(f"{job} has no 'search:' section")
    try:
        preflight(spec)
    except Exception as exc:  # a refused job: one audit record, no cluster
        from adp.jobs.refusal import record_refusal
        from adp.observe.audit import AuditLog

        record_refusal(AuditLog(), exc, resource=spec.source.uri, name=spec.name)
        raise
    spec = with_io_timeouts(spec)
    console = Console(stderr=as_json)
    with _client(spec, scheduler) as client:
        result = run_search_job(spec, client, console=console)
    if as_json:
        for record in result.leaderboard.to_dict(orient="records"):
            click.echo(json.dumps(record, default=str))


__all__ = ["demo", "run", "search", "validate"]

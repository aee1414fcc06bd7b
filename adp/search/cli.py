"""``adp search JOB.yaml``: run the ``search:`` section of a job spec."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from adp.errors import AdpError

if TYPE_CHECKING:  # pragma: no cover
    from adp.jobs.spec import JobSpec


def _client(spec: JobSpec, scheduler: str | None) -> Any:
    from adp.cluster import cluster_for

    return cluster_for(
        scheduler or spec.cluster.address,
        n_workers=spec.cluster.n_workers,
        threads_per_worker=spec.cluster.threads_per_worker,
        memory_limit=spec.cluster.memory_limit,
    )


@click.command("search")
@click.argument("job", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scheduler", metavar="ADDRESS", help="Scheduler address (overrides the spec).")
@click.option("--json", "as_json", is_flag=True, help="Print the leaderboard as JSON lines.")
def search(job: Path, scheduler: str | None, as_json: bool) -> None:
    """Search detectors and hyperparameters as JOB's 'search:' section says.

    Prints the leaderboard, best first, and registers the winner when the section has
    'register: {name: ...}'.
    """
    from rich.console import Console

    from adp.jobs.spec import JobSpec
    from adp.search.job import run_search_job

    try:
        spec = JobSpec.from_yaml(job)
        if spec.search is None:
            raise click.UsageError(f"{job} has no 'search:' section")
        console = Console(stderr=as_json)
        with _client(spec, scheduler) as client:
            result = run_search_job(spec, client, console=console)
    except AdpError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    if as_json:
        for record in result.leaderboard.to_dict(orient="records"):
            click.echo(json.dumps(record, default=str))


__all__ = ["search"]

"""The ``adp`` command.

Subcommands from other parts of ADP are imported only when they are used, so ``adp --help``
stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from adp.errors import AdpError

F = TypeVar("F", bound=Callable[..., Any])


class LazyGroup(click.Group):
    """A click group whose subcommands live in other modules, imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, _, attr = self.lazy[name].partition(":")
            try:
                command = getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:  # pragma: no cover - packaging error
                raise click.ClickException(f"'adp {name}' is not available: {exc}") from exc
            return command
        return super().get_command(ctx, name)


def fail_cleanly(func: F) -> F:
    """Turn ADP's errors into a one-line message and exit status 1."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AdpError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper  # type: ignore[return-value]


@click.group(
    cls=LazyGroup,
    lazy={
        "detectors": "adp.detect.cli:detectors",
        "audit": "adp.observe.cli:audit",
        "models": "adp.models.cli:models",
        "search": "adp.search.cli:search",
        "bench": "adp.bench.cli:bench",
    },
)
@click.version_option(package_name="adp")
def main() -> None:
    """ADP: find anomalies in large tables and arrays on a Dask cluster."""


@main.command()
@click.argument("job", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--scheduler", metavar="ADDRESS", help="Scheduler address (overrides the spec).")
@click.option(
    "--report", "report_path", type=click.Path(path_type=Path), help="Write the HTML report here."
)
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@fail_cleanly
def run(job: Path, scheduler: str | None, report_path: Path | None, progress: bool) -> None:
    """Run the job spec JOB (YAML): fit, score, threshold, write, report."""
    from adp.jobs.spec import JobSpec

    spec = JobSpec.from_yaml(job)
    _run_and_report(spec, scheduler=scheduler, report_path=report_path, progress=progress)


def _run_and_report(
    spec: Any, *, scheduler: str | None, report_path: Path | None, progress: bool
) -> Any:
    from rich.console import Console

    from adp.jobs.report import write_report
    from adp.jobs.runner import run_job
    from adp.jobs.summary import print_summary

    console = Console(stderr=False)
    result = run_job(
        spec, scheduler=scheduler, show_progress=progress, console=console, origin="cli"
    )
    if report_path is None and spec.report is not None:
        report_path = Path(spec.report.path or f"{spec.output.uri.rstrip('/')}.report.html")
    if report_path is not None:
        result.report_path = str(write_report(result, report_path, spec.report))
    print_summary(result, console)
    return result


@main.command()
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
@fail_cleanly
def demo(
    data_dir: Path,
    out_dir: Path,
    sensors: int,
    days: int,
    workers: int,
    scheduler: str | None,
    progress: bool,
) -> None:
    """Generate a sensor-fleet lake with injected anomalies, score it, and write a report."""
    from adp.jobs.demo import demo_spec, run_demo

    spec = demo_spec(data_dir, out_dir, workers=workers)
    run_demo(spec, sensors=sensors, days=days, scheduler=scheduler, progress=progress)


if __name__ == "__main__":  # pragma: no cover
    main()

"""The ``adp stream`` command: consume a stream spec until stopped."""

from __future__ import annotations

from pathlib import Path

import click

from adp.clitools import fail_cleanly


@click.command("stream")
@click.argument("spec", type=click.Path(path_type=Path))  # StreamSpec.from_yaml names a bad file
@click.option("--scheduler", metavar="ADDRESS", help="Scheduler address (overrides the spec).")
@click.option(
    "--max-events",
    type=click.IntRange(min=1),
    help="Stop after taking this many events (the batches in flight are finished).",
)
@click.option(
    "--until-idle",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this many seconds without events.",
)
@fail_cleanly
def stream(
    spec: Path, scheduler: str | None, max_events: int | None, until_idle: float | None
) -> None:
    """Score the events of the stream spec SPEC (YAML) as they arrive.

    Runs until SIGTERM or Ctrl-C (the batches in flight are finished, written and
    acknowledged; exit status 0), or the limits given. Prints what the run did.
    """
    from adp.stream.api import run_stream
    from adp.stream.collector import fewer_collections
    from adp.stream.spec import StreamSpec

    parsed = StreamSpec.from_yaml(spec)
    with fewer_collections():  # this process does nothing else
        result = run_stream(
            parsed, scheduler=scheduler, max_events=max_events, until_idle=until_idle, source="cli"
        )
    click.echo(result.summary())


__all__ = ["stream"]

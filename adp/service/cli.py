"""``adp serve`` (the service), ``adp submit`` and ``adp jobs`` (its command-line client)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from adp.clitools import fail_cleanly
from adp.service.retention_cli import retention
from adp.service.token_cli import token

__all__ = ["jobs", "retention", "serve", "submit", "token"]

_server = click.option("--server", help="The service's URL (default: adp.service.url).")
_token = click.option(
    "--token",
    help="A bearer token (default: adp.service.token, e.g. DASK_ADP__SERVICE__TOKEN).",
)


def _client(server: str | None, token: str | None) -> Any:
    from adp.service.client import ServiceClient

    return ServiceClient(server, token)


@click.command("serve")
@click.option("--host", help="Interface to listen on (default: adp.service.host).")
@click.option("--port", type=int, help="Port (default: adp.service.port).")
@click.option("--scheduler", help="A Dask scheduler address (default: a LocalCluster).")
@click.option("--max-running", type=click.IntRange(min=1), help="Jobs run at once.")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), help="Policy YAML.")
@fail_cleanly
def serve(
    host: str | None,
    port: int | None,
    scheduler: str | None,
    max_running: int | None,
    policy: Path | None,
) -> None:
    """Run the ADP service: a job API, the team's web page, on a Dask cluster."""
    import uvicorn

    from adp.config import settings
    from adp.service.api import create_app
    from adp.service.server import Service

    options = settings().service
    changes: dict[str, Any] = {
        "host": host,
        "port": port,
        "scheduler": scheduler,
        "max_running": max_running,
        "policy": policy.resolve() if policy else None,
    }
    options = options.model_copy(update={k: v for k, v in changes.items() if v is not None})
    service = Service.start(options)
    try:
        for job_id in service.interrupted:
            click.echo(f"job {job_id} was running when the service stopped: now interrupted")
        click.echo(
            f"ADP service on http://{options.host}:{options.port} (scheduler "
            f"{service.scheduler_address}, {options.max_running} jobs at once, state "
            f"{service.state_dir}); OpenAPI at /docs",
            err=True,
        )
        uvicorn.run(
            create_app(service, close_on_shutdown=True),
            host=options.host,
            port=options.port,
            log_level="warning",
            timeout_graceful_shutdown=5,
        )
    finally:
        service.close()


@click.command("submit")
@click.argument("job", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--stream", is_flag=True, help="JOB is a stream spec (as for `adp stream`).")
@_server
@_token
@fail_cleanly
def submit(job: Path, stream: bool, server: str | None, token: str | None) -> None:
    """Submit JOB (a YAML spec) to the service; prints the job's id and returns."""
    with _client(server, token) as client:
        click.echo(client.submit_stream(job) if stream else client.submit(job))


@click.group("jobs")
def jobs() -> None:
    """Jobs on the service: list, status, logs, cancel, resume, wait."""


@jobs.command("list")
@click.option("--state", help="Only jobs in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per job.")
@_server
@_token
@fail_cleanly
def list_command(state: str | None, as_json: bool, server: str | None, token: str | None) -> None:
    """Your jobs (every job for an operator), newest first."""
    from rich.console import Console
    from rich.table import Table

    with _client(server, token) as client:
        found = client.jobs(state)
    if as_json:
        for job in found:
            click.echo(json.dumps(job))
        return
    table = Table(title=f"{len(found)} jobs")
    table.add_column("id", no_wrap=True, min_width=32)
    for column in ("name", "owner", "state", "progress", "seconds"):
        table.add_column(column)
    for job in found:
        p = job["progress"]
        seconds = job["timings"]["seconds"]
        table.add_row(
            job["id"],
            job["name"],
            job["owner"],
            job["state"],
            f"{p['stage'] or '-'} {p['done']}/{p['total']}",
            "-" if seconds is None else f"{seconds:.1f}",
        )
    Console().print(table)


@jobs.command("status")
@click.argument("job_id")
@_server
@_token
@fail_cleanly
def status(job_id: str, server: str | None, token: str | None) -> None:
    """A job's state, progress, summary and timings (JSON)."""
    with _client(server, token) as client:
        click.echo(json.dumps(client.status(job_id), indent=2))


@jobs.command("logs")
@click.argument("job_id")
@_server
@_token
@fail_cleanly
def logs(job_id: str, server: str | None, token: str | None) -> None:
    """A job's log."""
    with _client(server, token) as client:
        click.echo(client.logs(job_id), nl=False)


@jobs.command("cancel")
@click.argument("job_id")
@_server
@_token
@fail_cleanly
def cancel(job_id: str, server: str | None, token: str | None) -> None:
    """Cancel a queued or running job."""
    with _client(server, token) as client:
        click.echo(client.cancel(job_id)["state"])


@jobs.command("resume")
@click.argument("job_id")
@_server
@_token
@fail_cleanly
def resume(job_id: str, server: str | None, token: str | None) -> None:
    """Queue a failed, cancelled or interrupted job again."""
    with _client(server, token) as client:
        click.echo(client.resume(job_id)["state"])


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=float, help="Give up after this many seconds (exit 2).")
@_server
@_token
@fail_cleanly
def wait(job_id: str, timeout: float | None, server: str | None, token: str | None) -> None:
    """Wait for a job to end; print its state; exit 0 only when it succeeded."""
    with _client(server, token) as client:
        try:
            final = client.wait(job_id, timeout=timeout)
        except TimeoutError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
    click.echo(final["state"])
    if final.get("error"):
        click.echo(final["error"], err=True)
    sys.exit(0 if final["state"] == "succeeded" else 1)

"""``adp models``: list, show and promote registered model versions."""

from __future__ import annotations

import json
from typing import Any

import click

from adp.clitools import fail_cleanly


def _registry(url: str | None, store: str | None) -> Any:
    from adp.models.api import ModelRegistry, default_registry

    return ModelRegistry(url, store) if (url or store) else default_registry()


_url = click.option("--url", help="Registry database URL (default: adp.models.url).")
_store = click.option("--store", help="Artifact store (default: adp.models.store).")


@click.group("models")
def models() -> None:
    """Registered models: versions, metadata, stages."""


@models.command("list")
@click.option("--name", help="Only versions of this model.")
@click.option("--stage", help="Only versions in this stage.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per version.")
@_url
@_store
@fail_cleanly
def list_command(
    name: str | None, stage: str | None, as_json: bool, url: str | None, store: str | None
) -> None:
    """List registered model versions."""
    from rich.console import Console
    from rich.table import Table

    versions = _registry(url, store).versions(name, stage)
    if as_json:
        for v in versions:
            click.echo(json.dumps(v.to_dict(), default=str))
        return
    table = Table(title=f"{len(versions)} registered model versions")
    for column in ("model", "stage", "detector", "score", "rows", "created", "by"):
        table.add_column(column)
    for v in versions:
        score = v.metrics.get("score")
        metric = v.metrics.get("metric", "")
        table.add_row(
            v.ref,
            v.stage,
            v.detector,
            f"{metric} {score:.4f}" if isinstance(score, int | float) else "-",
            str(v.sample_rows or "-"),
            v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            v.created_by,
        )
    Console().print(table)


@models.command("show")
@click.argument("ref", metavar="NAME[@VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
@_url
@_store
@fail_cleanly
def show_command(ref: str, as_json: bool, url: str | None, store: str | None) -> None:
    """Show one version's metadata (VERSION: a number, 'latest' or a stage)."""
    from rich.console import Console
    from rich.table import Table

    from adp.models.api import parse_ref

    name, version = parse_ref(ref)
    record = _registry(url, store).info(name, version)
    data = record.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    table = Table(title=record.ref, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    Console().print(table)


@models.command("promote")
@click.argument("ref", metavar="NAME@VERSION")
@click.argument("stage")
@click.option(
    "--keep-existing",
    is_flag=True,
    help="Do not archive the versions already in production.",
)
@_url
@_store
@fail_cleanly
def promote_command(
    ref: str, stage: str, keep_existing: bool, url: str | None, store: str | None
) -> None:
    """Move NAME@VERSION to STAGE (none, staging, production, archived)."""
    from adp.models.api import parse_ref

    name, version = parse_ref(ref)
    record = _registry(url, store).promote(name, version, stage, not keep_existing)
    click.echo(f"{record.ref} is now in {record.stage}")


__all__ = ["models"]

"""``adp retention apply``: delete expired job outputs and archive old audit records.

The lead attaches :data:`retention` to the main ``adp`` command (through
:mod:`adp.service.cli`); on its own it runs as ``python -m adp.service.retention_cli apply``.
"""

from __future__ import annotations

import json
import sys

import click

from adp.clitools import fail_cleanly

__all__ = ["retention"]


@click.group(name="retention")
def retention() -> None:
    """Apply the retention settings (adp.retention.results-days and audit-days)."""


@retention.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be deleted and moved.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@fail_cleanly
def apply(dry_run: bool, as_json: bool) -> None:
    """Delete the outputs and reports of succeeded jobs older than results-days (only
    outputs whose ADP manifest names the job), and move audit records older than
    audit-days to the archive table; every deletion is audited.

    Exits 0 when everything due was handled, 1 when a deletion failed (the rest is still
    done) or the audit trail does not verify.
    """
    from adp.service.retention import apply_retention

    report = apply_retention(dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(report.render())
    if report.failed:
        click.secho(
            f"error: {len(report.failed)} deletion(s) failed; see above", fg="red", err=True
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    retention(prog_name="adp retention")

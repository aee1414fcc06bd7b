"""``adp audit``: verify and show ADP's audit trail.

The lead attaches :data:`audit` to the main ``adp`` command; on its own it runs as
``python -m adp.observe.cli verify``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from adp.errors import AdpError

__all__ = ["audit"]

_URL_HELP = "SQLAlchemy URL of the audit log (default: adp.audit.url, then the state dir)."


class _AuditUnavailable(click.ClickException):
    exit_code = 2


def _open(url: str | None) -> Any:
    from adp.observe.audit import AuditLog

    try:
        return AuditLog(url, create=False)
    except AdpError as exc:
        raise _AuditUnavailable(str(exc)) from exc


@click.group(name="audit")
def audit() -> None:
    """Verify and show ADP's append-only, hash-chained audit trail."""


@audit.command()
@click.option("--url", default=None, help=_URL_HELP)
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail on records written after the last signed checkpoint.",
)
def verify(url: str | None, strict: bool) -> None:
    """Check every record's hash, the chain's links and the signed checkpoint.

    Exits 0 when the trail verifies, 1 naming the first bad sequence number when it does
    not, and 2 when the log cannot be read.
    """
    log = _open(url)
    try:
        result = log.verify(strict=strict)
    except AdpError as exc:
        raise _AuditUnavailable(str(exc)) from exc
    finally:
        log.close()
    if not result.ok:
        where = f"seq {result.first_bad_seq}" if result.first_bad_seq is not None else "checkpoint"
        click.echo(f"FAILED at {where}: {result.reason}", err=True)
        sys.exit(1)
    anchor = (
        f"signed checkpoint at seq {result.checkpoint_seq}"
        if result.checkpoint_seq is not None
        else "no signed checkpoint on this host"
    )
    click.echo(f"OK: {result.records_checked} audit records verified ({anchor}) in {log.url}")
    if result.unanchored:
        click.echo(
            f"warning: {result.unanchored} record(s) after the checkpoint are not anchored "
            "(another host, a crash between commit and checkpoint, or an insertion); "
            "use --strict to fail on them",
            err=True,
        )


@audit.command()
@click.option("--url", default=None, help=_URL_HELP)
@click.option("--job", "job_id", default=None, help="Only records of this job id.")
@click.option("--since", default=None, help="Only records at or after this ISO 8601 time (UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of stored records.")
def show(
    url: str | None, job_id: str | None, since: str | None, limit: int | None, as_json: bool
) -> None:
    """List audit records in sequence order."""
    log = _open(url)
    try:
        records = log.records(job_id=job_id, since=since, limit=limit)
    except AdpError as exc:
        raise _AuditUnavailable(str(exc)) from exc
    finally:
        log.close()
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=1))
        return
    for r in records:
        parts = [f"{r.seq:>6}", r.time, f"{r.outcome:<7}", r.event_type, r.action, r.identity]
        parts += [f"resource={r.resource}"] if r.resource else []
        parts += [f"job={r.job_id}"] if r.job_id else []
        parts += [f"reason={r.reason!r}"] if r.reason else []
        click.echo("  ".join(parts))
    if not records:
        click.echo("no audit records match", err=True)


if __name__ == "__main__":
    audit(prog_name="adp audit")

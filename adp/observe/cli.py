"""``adp audit``: verify, show and anchor ADP's audit trail.

The lead attaches :data:`audit` to the main ``adp`` command; on its own it runs as
``python -m adp.observe.cli verify``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from adp.errors import AdpError

__all__ = ["audit"]

_URL_HELP = "SQLAlchemy URL of the audit log (default: adp.audit.url, then the state dir)."
_table = click.option(
    "--table", default="adp_audit", show_default=True, help="The audit table in that database."
)


class _AuditUnavailable(click.ClickException):
    exit_code = 2


@contextmanager
def _opened(url: str | None, table: str, public_key: str | None = None) -> Iterator[Any]:
    """The audit log, read-only; every ADP error becomes exit status 2 with one line."""
    import dask.config

    from adp.observe.audit import AuditLog
    from adp.redact import redact_text

    overrides = {"adp.audit.public-key": public_key} if public_key else {}
    try:
        with dask.config.set(overrides):
            log = AuditLog(url, table=table, create=False)
    except AdpError as exc:
        raise _AuditUnavailable(str(redact_text(str(exc)))) from exc
    try:
        yield log
    except AdpError as exc:
        raise _AuditUnavailable(str(redact_text(str(exc)))) from exc
    finally:
        log.close()


def _anchor(uri: str) -> Any:
    from adp.config import settings
    from adp.observe.anchor import Anchor

    return Anchor(uri, settings().audit.anchor_storage_options)


@click.group(name="audit")
def audit() -> None:
    """Verify, show and anchor ADP's append-only, hash-chained audit trail."""


@audit.command()
@click.option("--url", default=None, help=_URL_HELP)
@_table
@click.option(
    "--lenient",
    is_flag=True,
    help="Warn about, instead of failing on, records after the last signed checkpoint.",
)
@click.option(
    "--anchor",
    "anchor_uri",
    metavar="URI",
    default=None,
    help="Also check against the signed checkpoints exported to this folder or s3:// URL "
    "(storage options: adp.audit.anchor-storage-options).",
)
@click.option(
    "--public-key",
    metavar="PEM",
    default=None,
    help="The Ed25519 public key that checks signatures (default: adp.audit.public-key).",
)
def verify(
    url: str | None, table: str, lenient: bool, anchor_uri: str | None, public_key: str | None
) -> None:
    """Check every record's hash, the chain's links and the signed checkpoints.

    Strict by default: records not covered by a signed checkpoint fail. Exits 0 when the
    trail verifies, 1 naming the first bad sequence number when it does not, and 2 when
    the log (or the anchor) cannot be read.
    """
    from adp.observe.checkpoint import anchored_heads

    with _opened(url, table, public_key) as log:
        anchors = None
        if anchor_uri is not None:
            anchor = _anchor(anchor_uri)
            try:
                anchors = anchored_heads(anchor, log.log_id, log._checkpoints.verifier)
            except AdpError as exc:
                click.echo(f"FAILED at anchor {anchor.shown}: {exc}", err=True)
                sys.exit(1)
        result = log.verify(strict=not lenient, anchors=anchors)
    if not result.ok:
        where = f"seq {result.first_bad_seq}" if result.first_bad_seq is not None else "checkpoint"
        click.echo(f"FAILED at {where}: {result.reason}", err=True)
        sys.exit(1)
    shown = (
        f"signed checkpoint at seq {result.checkpoint_seq}"
        if result.checkpoint_seq is not None
        else "no signed checkpoint"
    )
    if anchors is not None:
        shown += f", {len(anchors)} anchored checkpoint(s)"
    click.echo(f"OK: {result.records_checked} audit records verified ({shown}) in {log.url}")
    if result.unanchored:
        click.echo(
            f"warning: {result.unanchored} record(s) after the checkpoint are not anchored "
            "(another state directory, a crash between commit and checkpoint, or an "
            "insertion); without --lenient they fail verification",
            err=True,
        )


@audit.command()
@click.option("--url", default=None, help=_URL_HELP)
@_table
@click.option(
    "--to",
    "to",
    metavar="URI",
    default=None,
    help="A folder or s3:// URL (default: adp.audit.anchor).",
)
def anchor(url: str | None, table: str, to: str | None) -> None:
    """Export the log's current signed checkpoint to a second store.

    Verifies the chain first (strict): a log that fails is not anchored.
    """
    from adp.config import settings

    target = to or settings().audit.anchor
    if not target:
        raise click.UsageError(
            "give --to URI (a folder or s3://bucket/prefix) or set adp.audit.anchor"
        )
    with _opened(url, table) as log:
        result = log.verify()
        if not result.ok:
            click.echo(f"FAILED at seq {result.first_bad_seq}: {result.reason}", err=True)
            sys.exit(1)
        checkpoints = log._checkpoints
        with checkpoints.locked(shared=True):
            path, entry = checkpoints.path, checkpoints.entry()
        if entry is None:
            raise _AuditUnavailable(f"the audit log {log.url} has no signed checkpoint yet")
        store = _anchor(target)
        store.put(entry)
    click.echo(f"anchored the checkpoint at seq {entry['seq']} from {path} to {store.shown}")


@audit.command()
@click.option("--url", default=None, help=_URL_HELP)
@_table
@click.option("--job", "job_id", default=None, help="Only records of this job id.")
@click.option("--since", default=None, help="Only records at or after this ISO 8601 time (UTC).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of stored records.")
def show(
    url: str | None,
    table: str,
    job_id: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List audit records in sequence order."""
    with _opened(url, table) as log:
        records = log.records(job_id=job_id, since=since, limit=limit)
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

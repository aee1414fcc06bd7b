"""``adp clean``: remove staging that killed or vanished jobs left behind.

Looks at every local staging folder in the state directory's register and, for each OUTPUT
given, beside a local output or under an object-store output's ``_adp_v/``; removes those
whose owner is gone (see :mod:`adp.io.owners`), puts back a dataset an interrupted
overwrite had moved aside, and leaves a running job's staging alone. Jobs the audit trail
still shows ``started`` whose owner process is gone are closed there as ``interrupted``
(:func:`adp.observe.orphans.close_orphaned_jobs`).
"""

from __future__ import annotations

import click

from adp.clitools import fail_cleanly

__all__ = ["clean"]


@click.command(name="clean")
@click.argument("outputs", nargs=-1)
@click.option(
    "--endpoint-url",
    default=None,
    help="S3 endpoint of the OUTPUTS on object stores (credentials come from the environment).",
)
@click.option(
    "--stale-after",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds after which another host's heartbeat marks its job gone "
    "(default: adp.io.stale-seconds, 120 unless configured).",
)
@click.option(
    "--resumable",
    is_flag=True,
    help="Also remove staging kept for a service job's resume (its owner gone).",
)
@fail_cleanly
def clean(
    outputs: tuple[str, ...], endpoint_url: str | None, stale_after: float | None, resumable: bool
) -> None:
    """Remove abandoned staging: the local register's, and that of each OUTPUT location.

    Staging on an object store is found through its OUTPUT (with --endpoint-url for a
    store other than AWS; credentials come from the environment). Staging a service job
    keeps for its resume stays unless --resumable is given.
    """
    from adp.io.cleaning import clean_output, clean_registered
    from adp.io.owners import stale_seconds
    from adp.paths import check_allowed, check_storage_options, is_local

    stale = stale_after or stale_seconds()
    done = clean_registered(local_only=True, stale=stale, resumable=resumable)
    for output in outputs:
        options = None
        if endpoint_url and not is_local(output):
            options = {"client_kwargs": {"endpoint_url": endpoint_url}}
        check_allowed(output)
        check_storage_options(options)
        done.add(clean_output(output, options, stale=stale, resumable=resumable))
    for path in done.restored:
        click.echo(f"restored {path} (an interrupted overwrite had moved it aside)")
    for path in done.removed:
        click.echo(f"removed {path}")
    for path in done.unreachable:
        click.echo(f"could not reach {path}; try again later", err=True)
    click.echo(
        f"{len(done.removed)} abandoned staging folder(s) removed, {len(done.kept)} in use kept"
    )
    from adp.observe.audit import AuditLog
    from adp.observe.orphans import close_orphaned_jobs

    with AuditLog() as log:
        closed = close_orphaned_jobs(log, source="cli")
    click.echo(f"{closed} job(s) whose client is gone closed as interrupted in the audit trail")

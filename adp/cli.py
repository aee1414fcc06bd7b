"""The ``adp`` command: a table of subcommands that live beside their packages.

Each subcommand is imported only when it is used, so ``adp --help`` stays fast. Nothing
imports this module; shared command helpers are in :mod:`adp.clitools`.
"""

from __future__ import annotations

import click

from adp.clitools import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={
        "run": "adp.jobs.cli:run",
        "validate": "adp.jobs.cli:validate",
        "demo": "adp.jobs.cli:demo",
        "search": "adp.jobs.cli:search",
        "detectors": "adp.detect.cli:detectors",
        "audit": "adp.observe.cli:audit",
        "models": "adp.models.cli:models",
        "bench": "adp.bench.cli:bench",
        "clean": "adp.io.cli:clean",
        "serve": "adp.service.cli:serve",
        "submit": "adp.service.cli:submit",
        "jobs": "adp.service.cli:jobs",
        "token": "adp.service.cli:token",
        "retention": "adp.service.cli:retention",
        "cluster": "adp.cluster.cli:cluster",
        "stream": "adp.stream.cli:stream",
        "review": "adp.feedback.cli:review",
    },
)
@click.version_option(package_name="adp")
@click.option("--debug", is_flag=True, help="Print the traceback of a failed command.")
def main(debug: bool) -> None:
    """ADP: find anomalies in large tables and arrays on a Dask cluster."""
    if debug:
        import dask.config

        dask.config.set({"adp.debug": True})


if __name__ == "__main__":  # pragma: no cover
    main()

"""``adp bench``: the benchmarks, each in its own module, imported when used."""

from __future__ import annotations

import click

from adp.cli import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={
        "scoring": "adp.bench.scoring:scoring",
        "kernels": "adp.bench.kernels:kernels",
        "outofcore": "adp.bench.outofcore:outofcore",
        "profile": "adp.bench.profile:profile",
        "accuracy": "adp.bench.accuracy:accuracy",
        "io": "adp.bench.io:io",
        "search": "adp.bench.search:search",
        "selection": "adp.bench.search:selection",
        "plugins": "adp.observe.bench:plugins",
    },
)
def bench() -> None:
    """Benchmarks; every ratio is measured within one run."""

"""``adp bench``: the benchmarks, each in its own module, imported when used."""

from __future__ import annotations

import click

from adp.clitools import LazyGroup


@click.group(
    cls=LazyGroup,
    lazy={
        "scoring": "adp.bench.scoring:scoring",
        "kernels": "adp.bench.kernels:kernels",
        "outofcore": "adp.bench.outofcore:outofcore",
        "profile": "adp.bench.hotspots:profile",
        "accuracy": "adp.bench.accuracy:accuracy",
        "io": "adp.bench.reading:io",
        "search": "adp.bench.model_search:search",
        "selection": "adp.bench.selection:selection",
        "criteria": "adp.bench.model_search:selection",
        "plugins": "adp.bench.plugin_overhead:plugins",
        "chaos": "adp.bench.chaos:chaos",
        "service": "adp.bench.service_load:service",
        "feedback": "adp.bench.simulated_review:feedback",
        "stream": "adp.bench.streaming:stream",
        "scheduler": "adp.bench.scheduling:scheduler",
        "context": "adp.bench.contextual:context",
        "small": "adp.bench.small:small",
        "shipping": "adp.bench.shipping:shipping",
        "ranks": "adp.bench.ranks:ranks",
        "passes": "adp.bench.profile_pass:passes",
    },
)
def bench() -> None:
    """Benchmarks; every ratio is measured within one run."""

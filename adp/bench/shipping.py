"""``adp bench shipping``: repeated ``detect`` with one fitted model, model shipped once
against model embedded in every graph, in one run.

ECOD fitted on ``--fit-rows`` x ``--features`` (100,000 x 20: a 16 MB model) scores a frame
of ``--rows`` rows in 2 partitions ``--calls`` times. ``shipped`` is ADP's path: the model
goes to the cluster once per client (:mod:`adp.detect.shipping`) and every graph refers to
it. ``embedded`` is the same graph with the model inside it (what every call sent before),
built under :func:`adp.detect.shipping.in_process` and computed on the same cluster. The
two alternate, call by call, so both see the same load.
"""

from __future__ import annotations

import json
import statistics
import warnings
from typing import Any

import click
import dask
import numpy as np
import pandas as pd

from adp.bench.measure import cluster, timed

LARGE_GRAPH = "Sending large graph"


def _frame(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        rng.normal(size=(rows, features)), columns=[f"f{i}" for i in range(features)]
    )


def _timed_detect(det: Any, ddf: Any, embedded: bool) -> tuple[float, int]:
    """Seconds of one ``detect(...).compute()`` and the large-graph warnings it raised."""
    from adp.detect.shipping import in_process

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with timed() as timer:
            if embedded:
                with in_process():
                    frame = det.detect(ddf)
            else:  # on by default; set here so the bench measures it whatever the config
                with dask.config.set({"adp.score.ship-models": True}):
                    frame = det.detect(ddf)
            frame.compute()
    return timer.seconds, sum(LARGE_GRAPH in str(w.message) for w in caught)


def bench_shipping(
    fit_rows: int = 100_000,
    features: int = 20,
    rows: int = 10_000,
    calls: int = 10,
    client: Any = None,
) -> dict[str, Any]:
    """Per-call seconds of repeated ``detect`` with the model shipped once and embedded.

    Returns
    -------
    dict
        The sizes, the pickled model's bytes and, for ``shipped`` and ``embedded``, the
        median and best seconds per call and the large-graph warnings over all calls (the
        first, untimed call of each is a warm-up).
    """
    import pickle

    import dask.dataframe as dd

    import adp

    with cluster(client, n_workers=2, reuse_current=True):
        train = dd.from_pandas(_frame(fit_rows, features, 0), npartitions=4)
        with warnings.catch_warnings():  # the training frame itself travels in the graph
            warnings.filterwarnings("ignore", message=LARGE_GRAPH)
            det = adp.create_detector("ecod").fit(train, sample_rows=fit_rows)
        # the frame to score: large enough to take two partitions, small enough that the
        # model's transfer, not the scoring, is what a call costs
        ddf = dd.from_pandas(_frame(rows, features, 1), npartitions=2)
        times: dict[str, list[float]] = {"shipped": [], "embedded": []}
        warned = dict.fromkeys(times, 0)
        for call in range(calls + 1):
            for variant in times:
                took, n_warnings = _timed_detect(det, ddf, variant == "embedded")
                warned[variant] += n_warnings
                if call:
                    times[variant].append(took)
    result: dict[str, Any] = {
        "fit_rows": fit_rows,
        "features": features,
        "rows": rows,
        "calls": calls,
        "model_bytes": len(pickle.dumps(det.scorer_)),
    }
    for variant, runs in times.items():
        result[variant] = {
            "median_seconds": statistics.median(runs),
            "best_seconds": min(runs),
            "large_graph_warnings": warned[variant],
        }
    return result


@click.command("shipping")
@click.option("--fit-rows", default=100_000, show_default=True)
@click.option("--features", default=20, show_default=True)
@click.option("--rows", default=10_000, show_default=True, help="Rows scored per call.")
@click.option("--calls", default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def shipping(fit_rows: int, features: int, rows: int, calls: int, as_json: bool) -> None:
    """Repeated detect: the model shipped once per client against embedded in every graph."""
    result = bench_shipping(fit_rows, features, rows, calls)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"ECOD fitted on {fit_rows} x {features} ({result['model_bytes'] / 1e6:.1f} MB model), "
        f"detect on {rows} rows, {calls} calls"
    )
    click.echo("")
    click.echo("| model | median s per call | best s | large-graph warnings |")
    click.echo("|---|---:|---:|---:|")
    for variant in ("embedded", "shipped"):
        r = result[variant]
        click.echo(
            f"| {variant} | {r['median_seconds']:.3f} | {r['best_seconds']:.3f} | "
            f"{r['large_graph_warnings']} |"
        )

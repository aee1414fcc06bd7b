"""``adp bench shipping`` on a small model: every embedded graph carries the model, no
shipped one does."""

from __future__ import annotations

import dask
import pytest
from distributed import Client

from adp.bench.shipping import bench_shipping


@pytest.mark.slow
def test_bench_shipping_compares_shipped_and_embedded_models(client: Client) -> None:
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1MB"}):
        report = bench_shipping(fit_rows=20_000, features=10, rows=2000, calls=2, client=client)
    assert report["model_bytes"] > 1_000_000
    assert (report["fit_rows"], report["features"], report["rows"], report["calls"]) == (
        20_000,
        10,
        2000,
        2,
    )
    for variant in ("shipped", "embedded"):
        run = report[variant]
        assert 0 < run["best_seconds"] <= run["median_seconds"]
    assert report["embedded"]["large_graph_warnings"] == 3  # the warm-up call and 2 timed
    assert report["shipped"]["large_graph_warnings"] == 0

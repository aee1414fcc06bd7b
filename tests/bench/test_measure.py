"""bench/measure.py, the one place benchmarks time and measure through, and the errors a
benchmark raises when its own self-check or its arguments fail."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adp.bench import measure
from adp.errors import AdpError, BenchmarkError, ConfigError


def test_timed_records_the_block_even_when_it_raises() -> None:
    with measure.timed() as timer:
        time.sleep(0.05)
    assert 0.05 <= timer.seconds < 1.0
    with pytest.raises(RuntimeError), measure.timed() as failing:
        time.sleep(0.02)
        raise RuntimeError("boom")
    assert 0.02 <= failing.seconds < 1.0


def test_best_of_and_per_call() -> None:
    delays = iter([0.06, 0.01, 0.04])
    best, last = measure.best_of(lambda: time.sleep(next(delays)) or "done", 3)
    assert 0.01 <= best < 0.04 and last == "done"
    calls: list[int] = []
    seconds = measure.per_call(lambda: calls.append(1) or time.sleep(0.01), 5)
    assert len(calls) == 5 and 0.01 <= seconds < 0.2


def test_median_and_best_and_fresh_tokens() -> None:
    assert measure.median_and_best([3.0, 1.0, 2.0, 10.0]) == (2.5, 1.0)
    tokens = {measure.fresh_token() for _ in range(100)}
    assert len(tokens) == 100


def test_memory_readers() -> None:
    before = measure.current_rss()
    block = np.ones(50_000_000 // 8)  # 50 MB, touched
    assert measure.current_rss() - before >= 40_000_000
    assert measure.peak_rss() >= measure.current_rss() > 0
    del block


def test_a_benchmark_error_is_an_adp_runtime_error() -> None:
    assert issubclass(BenchmarkError, AdpError) and issubclass(BenchmarkError, RuntimeError)


def test_bad_benchmark_arguments_are_config_errors() -> None:
    from adp.bench.kernels_ecdf import measure_ecdf
    from adp.bench.reading import bench_io

    with pytest.raises(ConfigError, match="method must be 'ecod' or 'copod', got 'lof'"):
        measure_ecdf(rows=10, features=2, sample_rows=10, method="lof")
    with pytest.raises(ConfigError, match="rows must be at least 8"):
        bench_io(rows=3)


def test_the_threshold_benchmark_checks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    from adp.bench.kernels import measure_threshold
    from adp.detect import threshold

    assert measure_threshold(rows=2000, partitions=4, repeats=1)["passes_seconds"] > 0
    monkeypatch.setattr(threshold, "_pick", lambda found, window: -1.0)
    with pytest.raises(BenchmarkError, match=r"found -1\.0, np\.partition"):
        measure_threshold(rows=2000, partitions=4, repeats=1)


def test_cluster_uses_the_given_client_then_the_current_one(client) -> None:
    with measure.cluster(client) as given:
        assert given is client
    with measure.cluster(reuse_current=True) as current:
        assert current is client
    assert client.status == "running"  # not closed by the helper

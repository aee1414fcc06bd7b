"""`adp bench stream` on a small scale: every phase runs and its figures hang together."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from adp.bench.streaming import bench_stream


@pytest.mark.slow
def test_bench_stream_measures_throughput_latency_memory_and_river(
    redis_client: Any, stream_client: Any, pg_url: str
) -> None:
    engine = sa.create_engine(pg_url)
    tables_before = set(sa.inspect(engine).get_table_names())
    result = bench_stream(
        events=1500,
        features=5,
        rate=500,
        seconds=2.0,
        batch=500,
        river_events=300,
        train_rows=2000,
        max_in_flight=2,
        client=stream_client,
        sql=pg_url,
    )
    sustained, latency, river = result["sustained"], result["latency"], result["river"]
    assert sustained["events"] == 1500 and sustained["events_per_s"] > 0
    assert sustained["batches"] >= 3 and sustained["max_in_flight"] == 2
    cpu = sustained["cpu_us_per_event"]
    assert set(cpu) == {"consumer", "workers", "scheduler", "redis", "postgres"}
    assert cpu["consumer"] > 0 and cpu["redis"] > 0  # the consumer and Redis did work
    assert cpu["postgres"] >= 0  # measured (1,500 rows may take less than a clock tick)
    assert sustained["sql"] == pg_url  # the bench counted every row in its table
    assert set(sa.inspect(engine).get_table_names()) == tables_before  # and dropped it
    assert latency["events"] == 1000
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert 0 < latency["rss_start_mb"] <= latency["rss_peak_mb"]
    assert len(latency["rss_quarters_mb"]) == 4 and min(latency["rss_quarters_mb"]) > 0
    assert river["events"] == 300 and river["events_per_s"] > 0


def test_a_bad_sql_url_is_one_line_naming_the_option_before_any_cluster() -> None:
    from click.testing import CliRunner

    from adp.bench.streaming import stream

    # an unreachable Redis too: the URL's check must come first
    result = CliRunner().invoke(stream, ["--sql", "not-a-url", "--redis", "redis://127.0.0.1:1/0"])
    assert result.exit_code != 0
    assert result.output.startswith("error: invalid --sql 'not-a-url'"), result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_bench_table_says_when_it_cannot_be_dropped(caplog: pytest.LogCaptureFixture) -> None:
    from adp.bench.stream_sql import BenchTable

    table = BenchTable("postgresql+psycopg://postgres:hunter2@127.0.0.1:1/test")
    with caplog.at_level(logging.WARNING, logger="adp.bench.stream_sql"):
        table.drop()  # nothing listens on port 1: logged, not raised over the run's own error
    assert f"could not drop the bench's table '{table.table}'" in caplog.text
    assert "hunter2" not in caplog.text

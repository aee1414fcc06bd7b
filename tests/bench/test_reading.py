"""``adp bench io``: every source measured with 1 and 2 workers in one run."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adp.bench.reading import io


@pytest.mark.slow
def test_bench_io_measures_every_source_on_1_and_2_workers(client, pg_url):
    result = CliRunner().invoke(io, ["--rows", "800", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    measured = {(r["source"], r["workers"]) for r in records}
    sources = ("parquet-local", "parquet-s3", "sqlite", "postgresql")
    assert measured == {(s, w) for s in sources for w in (1, 2)}
    assert all(r["status"] == "ok" for r in records), records
    assert all(r["rows"] == 800 and r["rows_per_s"] > 0 for r in records)

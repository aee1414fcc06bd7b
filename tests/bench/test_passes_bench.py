"""``adp bench passes`` on tiny lakes: the profile costs no read of its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from adp.bench.profile_pass import passes, table


@pytest.mark.slow
def test_bench_passes_counts_one_read_less_for_the_profile(tmp_path: Path) -> None:
    args = ["--rows", "20000", "--csv-rows", "10000", "--features", "3", "--repeats", "1"]
    args += ["--workers", "1"]
    result = CliRunner().invoke(passes, [*args, "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    # one file each: Parquet lengths come from its footer, CSV rows must be counted
    assert (report["parquet"]["apart"]["reads"], report["parquet"]["together"]["reads"]) == (2, 1)
    assert (report["csv"]["apart"]["reads"], report["csv"]["together"]["reads"]) == (3, 2)
    assert all(report[k]["together"]["seconds"] > 0 for k in ("parquet", "csv"))
    assert "| parquet | 20,000 |" in table(report)

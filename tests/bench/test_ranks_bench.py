"""``adp bench ranks`` on a tiny ensemble: both ways timed, equal scores checked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adp.bench.ranks import ranks


@pytest.mark.slow
def test_bench_ranks_times_both_ways_on_equal_scores() -> None:
    args = ["--members", "ecod,copod", "--fit-rows", "3000", "--features", "3"]
    result = CliRunner().invoke(ranks, [*args, "--rows", "5000", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["members"] == ["ecod", "copod"]
    assert (report["fit_rows"], report["features"], report["rows"]) == (3000, 3, 5000)
    for key in ("normalise_seconds", "ensemble_seconds"):
        assert set(report[key]) == {"index", "searchsorted"}
        assert all(seconds > 0 for seconds in report[key].values())
    table = CliRunner().invoke(ranks, [*args, "--rows", "500", "--repeats", "1"])
    assert table.exit_code == 0 and "| whole ensemble |" in table.output

"""``adp bench small`` end to end on a tiny frame: PyOD's and ADP's seconds and the target."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from distributed import Client

from adp.bench.small import TARGET_FACTOR, TARGET_SLACK_SECONDS, format_table, small


@pytest.mark.slow
def test_bench_small_reports_pyod_adp_and_the_target(client: Client) -> None:
    args = ["--rows", "300", "--features", "4", "--detectors", "ecod,copod", "--repeats", "2"]
    result = CliRunner().invoke(small, [*args, "--json"])
    report = json.loads(result.output.strip().splitlines()[0])
    assert (report["rows"], report["features"], report["repeats"]) == (300, 4, 2)
    assert [r["detector"] for r in report["runs"]] == ["ecod", "copod"]
    for run in report["runs"]:
        assert run["pyod_seconds"] > 0 and run["adp_seconds"] > 0
        assert run["adp_cluster_seconds"] > 0
        target = TARGET_FACTOR * run["pyod_seconds"] + TARGET_SLACK_SECONDS
        assert run["target_seconds"] == target
        assert run["passed"] == (run["adp_seconds"] <= target)
    # the exit status says whether every detector met its target
    assert result.exit_code == (0 if all(r["passed"] for r in report["runs"]) else 1)
    table = format_table(report)
    assert table.count("\n| ") == 3 and "| ecod |" in table and "| copod |" in table

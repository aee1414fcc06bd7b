"""``adp bench scheduler``: the scheduler's CPU per task, measured on a deployed cluster."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from adp.bench.cli import bench
from adp.bench.scheduling import _frame, bench_scheduler, predict_rows


def test_the_prediction_grows_with_workers_and_task_cost() -> None:
    base = predict_rows(10, 0.0005, 500_000, 2)
    assert base == 10 * 0.0005 * 2 * 500_000 / 0.05  # R = k c W r / s
    assert predict_rows(10, 0.0005, 500_000, 100) == 50 * base
    assert predict_rows(5, 0.0005, 500_000, 2) == base // 2
    with pytest.raises(ValueError, match="positive"):
        predict_rows(0, 0.0005, 500_000, 2)


@pytest.mark.slow
def test_bench_scheduler_counts_tasks_and_scheduler_cpu(tmp_path) -> None:
    result = bench_scheduler((5, 20), rows=50, features=3, rate_rows=5_000, root=tmp_path)
    small, large = result["sizes"]
    assert (small["partitions"], large["partitions"]) == (5, 20)
    assert large["rows"] == 20 * 50 and large["tasks"] > small["tasks"] >= 5
    assert large["tasks_per_partition"] >= 1
    assert large["scheduler_cpu_seconds"] > 0 and large["scheduler_cpu_ms_per_task"] > 0
    # contamination 0.01 of the rows, exactly (the threshold is global)
    assert large["flagged"] == 0.01 * large["rows"]
    prediction = result["prediction"]["min_rows_per_partition_by_workers"]
    assert prediction["100"] > prediction["10"] > prediction["2"] > 0
    assert result["worker_rows_per_second"] > 0


def test_every_measured_lake_has_fresh_task_keys() -> None:
    # the same keys computed again at once can find the last results still on the cluster
    # (the release is asynchronous): a scoring rate measured so was 15x too high
    first, again = _frame(2, 10, 3), _frame(2, 10, 3)
    assert set(first.__dask_keys__()).isdisjoint(again.__dask_keys__())
    assert first.compute().equals(again.compute())  # the same data under other keys


def test_bad_partitions_are_one_line() -> None:
    result = CliRunner().invoke(bench, ["scheduler", "--partitions", "10,x"])
    assert result.exit_code == 2
    assert "'--partitions': takes comma-separated integers, got '10,x'" in result.output
    assert "Traceback" not in result.output

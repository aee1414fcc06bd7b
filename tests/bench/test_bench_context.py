"""``adp bench context``: NAB's window evaluation on hand-made rows, and the benchmark run
on a few shared NAB series (skipped without the shared data, a failure in CI)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from ci_support import need_in_ci
from distributed import Client

from adp.bench.contextual import METHODS, bench_nab, default_nab_path, evaluate_windows, windows


def test_windows_are_runs_of_labels() -> None:
    assert windows(np.array([0, 1, 1, 0, 0, 1, 0])).tolist() == [-1, 0, 0, -1, -1, 1, -1]
    assert windows(np.array([1, 1])).tolist() == [0, 0]


def test_window_recall_and_false_alarms() -> None:
    frame = pd.DataFrame(
        {
            "series": ["a"] * 6 + ["b"] * 4,
            "label": [0, 1, 1, 0, 1, 0, 0, 0, 0, 0],
            "flag": [1, 0, 1, 0, 0, 1, 0, 1, 1, 0],
        }
    )
    got = evaluate_windows(frame)
    assert got["windows"] == 2 and got["detected"] == 1 and got["window_recall"] == 0.5
    assert got["false_alarms"] == 4 and got["false_alarms_per_1000"] == 400.0
    assert math.isnan(evaluate_windows(frame[frame["series"] == "b"])["window_recall"])


@pytest.mark.slow
def test_bench_nab_on_two_series(client: Client) -> None:
    path = default_nab_path()
    if not path.exists():
        need_in_ci(f"the shared NAB data is not at {path}")
    series = ["artificialWithAnomaly/art_daily_jumpsup", "realKnownCause/rogue_agent_key_hold"]
    table = bench_nab(path, series=series, rate=0.01, npartitions=3)
    assert set(table["method"]) == set(METHODS)
    assert set(table["family"]) == {
        "artificialWithAnomaly",
        "realKnownCause",
        "all (with anomalies)",
    }
    overall = table[table["family"] == "all (with anomalies)"].set_index("method")
    assert (overall["windows"] > 0).all() and (overall["rows"] == 4032 + 1882).all()
    assert overall["window_recall"].between(0, 1).all()
    # the same flag budget per series: about 1% of the rows, at most 10 false alarms per 1,000
    assert (overall["false_alarms_per_1000"] <= 10.0 + 1e-9).all()
    # the jump of art_daily_jumpsup is plain once the daily cycle is taken out
    jumps = table[table["family"] == "artificialWithAnomaly"].set_index("method")
    assert jumps.loc["context_iforest", "detected"] == jumps.loc["context_iforest", "windows"] == 1


def test_bad_seeds_are_refused_before_any_cluster_starts() -> None:
    from click.testing import CliRunner

    from adp.bench.contextual import context

    result = CliRunner().invoke(context, ["--no-demo", "--seeds", "0,one"])
    assert result.exit_code == 2
    assert "seeds must be comma-separated integers, got '0,one'" in result.output

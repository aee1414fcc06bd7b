"""The exact global threshold: the k-th largest score, found in bounded passes."""

from __future__ import annotations

import math

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from adp.detect.threshold import (
    Contamination,
    check_contamination,
    kth_largest,
    kth_largest_array,
    top_count,
)
from adp.errors import DataError, DetectorError


def _series(values: np.ndarray, npartitions: int) -> dd.Series:
    return dd.from_pandas(pd.Series(values, name="score"), npartitions=npartitions)


def _expected(values: np.ndarray, fraction: float) -> float:
    k = max(1, math.ceil(fraction * len(values) - 1e-9))
    return float(np.sort(values)[::-1][k - 1])


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=10_001),
        np.random.default_rng(1).exponential(size=5000) ** 3,  # long tail: most in one bin
        np.round(np.random.default_rng(2).normal(size=8000), 1),  # heavy ties
        np.r_[np.zeros(5000), np.ones(3)],
    ],
    ids=["normal", "long-tail", "ties", "mostly-equal"],
)
@pytest.mark.parametrize("fraction", [0.001, 0.05, 0.5])
def test_kth_largest_is_exact(values, fraction) -> None:
    got = dask.compute(kth_largest(_series(values, 9), fraction, bins=64), scheduler="sync")[0]
    assert got == _expected(values, fraction)


def test_all_equal_scores() -> None:
    got = kth_largest(_series(np.full(100, 2.5), 4), 0.1).compute(scheduler="sync")
    assert got == 2.5


def test_empty_dataset_is_an_error() -> None:
    with pytest.raises(DataError, match="empty"):
        kth_largest(_series(np.array([], dtype=float), 1), 0.1).compute(scheduler="sync")


def test_non_finite_scores_are_an_error() -> None:
    with pytest.raises(DataError, match="NaN or infinite"):
        kth_largest(_series(np.array([1.0, np.nan, 2.0]), 1), 0.1).compute(scheduler="sync")


def test_contamination_range() -> None:
    with pytest.raises(DetectorError, match="contamination"):
        Contamination(0.0)
    with pytest.raises(DetectorError, match="contamination"):
        Contamination(0.7)
    with pytest.raises(DetectorError, match="AutoThreshold"):
        Contamination("auto")  # type: ignore[arg-type]


def test_one_contamination_validator_names_the_field() -> None:
    assert check_contamination(0.05) == 0.05 and isinstance(check_contamination(1 / 4), float)
    assert check_contamination(" AUTO ") == "auto"
    for bad in (0, 0.0, -0.1, 0.51, float("nan"), True, None, "most", [0.1]):
        with pytest.raises(DetectorError, match=r"^threshold\.contamination must be"):
            check_contamination(bad, "threshold.contamination")
    assert issubclass(DetectorError, ValueError)


def test_kth_largest_array_is_the_distributed_rule_on_an_array() -> None:
    values = np.array([5.0, 1.0, 3.0, 4.0, 2.0, 9.0, 7.0, 8.0, 6.0, 0.0])
    assert kth_largest_array(values, 0.3) == 7.0  # ceil(0.3 * 10) = 3rd largest, not 4th
    assert top_count(0.1, 30) == 3 and top_count(0.001, 10) == 1
    lazy = kth_largest(_series(values, 3), 0.3).compute(scheduler="sync")
    assert lazy == kth_largest_array(values, 0.3)
    with pytest.raises(DataError, match="empty"):
        kth_largest_array(np.array([]), 0.1)


_READS: list[int] = []


def _read_part(i: int, values: np.ndarray) -> pd.Series:
    _READS.append(i)
    return pd.Series(values, name="score")


@pytest.mark.parametrize("rule", ["contamination", "mad"])
def test_stepwise_passes_reread_the_scores_instead_of_holding_them(rule) -> None:
    # With ``step``, each pass is computed before the next is built, so the partitions are
    # read again by every pass (nothing is held between passes) and the answer is the same.
    from adp.detect.threshold import AutoThreshold

    values = np.random.default_rng(7).normal(size=6000)
    chunks = np.array_split(values, 4)
    scores = dd.from_delayed(
        [dask.delayed(_read_part)(i, c) for i, c in enumerate(chunks)],
        meta=pd.Series(dtype=float, name="score"),
    )
    threshold = Contamination(0.05) if rule == "contamination" else AutoThreshold("mad")
    steps: list[object] = []

    def step(value):
        steps.append(value)
        return dask.compute(value, scheduler="sync")[0]

    with dask.config.set(scheduler="sync"):
        _READS.clear()
        together = threshold.resolve(scores).compute()
        reads_together = len(_READS)
        _READS.clear()
        stepwise = threshold.resolve(scores, step=step).compute()
    assert stepwise == together
    assert reads_together == 4  # one graph: each partition read once, held for all passes
    passes = 3 if rule == "contamination" else 6  # mad: median, then the deviations' median
    assert len(_READS) == 4 * passes
    assert len(steps) == passes - 1


def test_the_threshold_graph_grows_linearly_with_the_partitions() -> None:
    """Each pass's per-partition tasks depend on the last pass's result: built on that
    result's tree of Delayed objects, every task merged all of its layers again (1,000
    partitions took 170 MB to build, 1,500 took 500 MB, 10,000 exhausted 24 GB)."""
    import tracemalloc

    scores = dd.from_pandas(pd.Series(np.arange(1000.0)), npartitions=1000)
    tracemalloc.start()
    try:
        value = kth_largest(scores, 0.01)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"{peak / 1e6:.0f} MB to build the graph"
    assert value.compute(scheduler="sync") == 990.0  # the 10th largest of 0..999

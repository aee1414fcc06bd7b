"""Trailing windows per entity agree with pandas' grouped rolling windows and never reach
into another entity's rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from adp.context.windows import group_starts, rolling


@pytest.fixture
def grouped() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    codes = np.repeat([0, 1, 2], [7, 1, 30])
    return codes, rng.normal(size=len(codes))


def test_group_starts_point_at_each_entity_first_row() -> None:
    starts = group_starts(np.array([4, 4, 7, 7, 7, 9]))
    assert starts.tolist() == [0, 0, 2, 2, 2, 5]
    assert group_starts(np.array([], dtype=np.int64)).tolist() == []


@pytest.mark.parametrize("stat", ["mean", "std", "min", "max", "median"])
def test_window_statistics_match_pandas_per_entity(grouped, stat: str) -> None:
    codes, values = grouped
    got = rolling(values, group_starts(codes), 5, stat)
    rolled = pd.Series(values).groupby(codes).rolling(5, min_periods=1)
    kwargs = {"ddof": 0} if stat == "std" else {}
    expected = getattr(rolled, stat)(**kwargs).reset_index(level=0, drop=True).sort_index()
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=1e-12, atol=1e-12)


def test_diff_restarts_at_each_entity(grouped) -> None:
    codes, values = grouped
    got = rolling(values, group_starts(codes), 5, "diff")
    expected = pd.Series(values).groupby(codes).diff().fillna(0.0).to_numpy()
    np.testing.assert_allclose(got, expected)
    assert got[7] == 0.0  # the one-row entity has no previous row


def test_a_row_window_does_not_depend_on_its_neighbours(grouped) -> None:
    codes, values = grouped
    whole = rolling(values, group_starts(codes), 4, "mean")
    last = codes == 2
    alone = rolling(values[last], group_starts(codes[last]), 4, "mean")
    assert np.array_equal(whole[last], alone)  # bit for bit, not just close

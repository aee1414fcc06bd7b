"""Matrix-profile discords (STUMPY): the top discord lies on an injected anomaly, the Dask
``stumped`` profile equals single-process ``stump``, the frozen model scores a row from its
own window only, fleets are scored per entity independently of the partitioning, and
errors name what to fix.

STUMPY compiles its Numba kernels on first use in each process (tens of seconds), so the
tests that run it are marked slow."""

from __future__ import annotations

import sys

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

from adp.context.discords import (
    DiscordModel,
    discord_frame,
    discord_scores,
    matrix_profile,
    require_stumpy,
    row_scores,
    top_discords,
)
from adp.errors import ConfigError, DataError

CYCLE = 50  # rows per cycle of the generated series; also the window m
ANOMALY = slice(1_210, 1_225)


def _series(n: int = 2_000, seed: int = 0, anomaly: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = np.sin(2 * np.pi * np.arange(n) / CYCLE) + rng.normal(0, 0.05, n)
    if anomaly:  # a flattened stretch: inside the series' range, but a shape never seen
        values[ANOMALY] = values[ANOMALY.start]
    return values


def _on_anomaly(row: int) -> bool:
    return ANOMALY.start <= row < ANOMALY.stop


# -- per-row scores from a profile (no STUMPY needed) --------------------------------------


def test_cover_gives_each_row_the_largest_window_that_holds_it() -> None:
    profile = np.random.default_rng(3).random(20)
    m = 4
    cover = row_scores(profile, m, "cover")
    assert len(cover) == len(profile) + m - 1
    for row in range(len(cover)):
        holding = profile[max(0, row - m + 1) : row + 1]
        assert cover[row] == holding.max()


def test_end_gives_each_row_the_window_that_ends_on_it() -> None:
    profile = np.random.default_rng(4).random(20)
    end = row_scores(profile, 5, "end")
    assert np.isnan(end[:4]).all()
    np.testing.assert_array_equal(end[4:], profile)


def test_top_discords_do_not_overlap() -> None:
    profile = np.full(100, np.nan)  # NaN: windows that cannot be scored
    profile[[10, 12, 60]] = [3.0, 2.0, 1.0]
    assert top_discords(profile, 5, k=3).tolist() == [10, 60]  # 12 is within 5 rows of 10
    profile[np.isnan(profile)] = 0.0
    assert top_discords(profile, 5, k=3).tolist()[:2] == [10, 60]


@pytest.mark.parametrize(("m", "match"), [(2, "at least 3"), (4.5, "whole number")])
def test_a_bad_window_is_refused(m: object, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        row_scores(np.zeros(10), m, "cover")  # type: ignore[arg-type]


def test_an_unknown_alignment_is_refused() -> None:
    with pytest.raises(ConfigError, match="align 'start' is not one of cover, end"):
        row_scores(np.zeros(10), 3, "start")


def test_without_stumpy_the_error_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "stumpy", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'adp\[timeseries\]'"):
        require_stumpy()
    with pytest.raises(ConfigError, match="stumpy"):
        discord_scores(_series(), CYCLE)


# -- STUMPY --------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_top_discord_lies_on_the_anomaly() -> None:
    values = _series()
    profile = matrix_profile(values, CYCLE)
    start = int(top_discords(profile, CYCLE)[0])
    assert start < ANOMALY.stop and ANOMALY.start < start + CYCLE  # the window overlaps it
    scores = discord_scores(values, CYCLE, align="cover")
    assert len(scores) == len(values)
    top_rows = np.flatnonzero(scores == np.nanmax(scores))
    assert any(_on_anomaly(r) for r in top_rows)
    clean = discord_scores(_series(anomaly=False), CYCLE, align="cover")
    assert np.nanmax(clean) < np.nanmax(scores)


@pytest.mark.slow
def test_stumped_on_the_cluster_equals_single_process_stump() -> None:
    from distributed import LocalCluster

    values = _series(seed=1)
    local = matrix_profile(values, CYCLE)
    reference = _series(seed=2, anomaly=False)
    joined_local = matrix_profile(values, CYCLE, reference=reference)
    # a cluster of worker threads in this process: stumped's tasks reuse the kernels
    # compiled here (worker processes would each compile them again, ~30 s)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        distributed = matrix_profile(values, CYCLE, client=client)
        joined = matrix_profile(values, CYCLE, reference=reference, client=client)
    np.testing.assert_allclose(distributed, local, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(joined, joined_local, rtol=1e-7, atol=1e-9)


@pytest.mark.slow
def test_missing_values_make_their_windows_unscorable() -> None:
    values = _series(anomaly=False)
    values[500] = np.nan
    profile = matrix_profile(values, CYCLE)
    assert np.isnan(profile[500 - CYCLE + 1 : 501]).all()
    assert np.isfinite(profile[: 500 - CYCLE + 1]).all()


@pytest.mark.slow
def test_a_too_short_series_is_refused() -> None:
    with pytest.raises(DataError, match=r"needs at least 100"):
        matrix_profile(np.arange(80.0), CYCLE)


@pytest.mark.slow
def test_the_frozen_model_scores_a_row_from_its_own_window() -> None:
    model = DiscordModel.fit(_series(seed=5, anomaly=False), CYCLE)
    assert len(model.train_scores) == 2_000
    new = _series(seed=6)
    whole = model.score(new)
    assert np.isnan(whole[: CYCLE - 1]).all() and np.isfinite(whole[CYCLE - 1 :]).all()
    top = int(np.nanargmax(whole))
    assert ANOMALY.start <= top < ANOMALY.stop + CYCLE  # the first window that holds it
    # in two micro-batches, the second given the rows before it: the same scores
    cut = 1_000
    first = model.score(new[:cut])
    second = model.score(new[cut:], history=new[:cut])
    np.testing.assert_allclose(np.concatenate([first, second]), whole, rtol=1e-9, equal_nan=True)
    # a row's score does not depend on later rows
    np.testing.assert_allclose(model.score(new[:700]), whole[:700], rtol=1e-9, equal_nan=True)


def _fleet() -> pd.DataFrame:
    frames = []
    for s in range(3):
        values = _series(seed=10 + s, anomaly=s == 1)
        ts = pd.date_range("2026-03-01", periods=len(values), freq="5min")
        frames.append(pd.DataFrame({"sid": f"s{s}", "ts": ts, "v": values}))
    short = pd.DataFrame(
        {"sid": "s3", "ts": pd.date_range("2026-03-01", periods=60, freq="5min"), "v": 0.0}
    )
    return pd.concat([*frames, short], ignore_index=True)


@pytest.mark.slow
def test_a_fleet_is_scored_per_entity_whatever_the_partitioning() -> None:
    fleet = _fleet()
    # in this process: stumpy's kernels are compiled here already (the cluster's workers
    # would each compile them again, half a minute each); the graph is the cluster's
    with dask.config.set({"scheduler": "sync", "dataframe.shuffle.method": "tasks"}):
        scores = [
            discord_frame(dd.from_pandas(fleet, npartitions=n), "v", CYCLE, time="ts", by="sid")
            .compute()
            .sort_index()
            for n in (1, 5)
        ]
    pd.testing.assert_series_equal(scores[0], scores[1])
    out = fleet.assign(score=scores[0])
    assert out.loc[out["sid"] == "s3", "score"].isna().all()  # shorter than 2 m rows
    top = out["score"].idxmax()
    assert out.loc[top, "sid"] == "s1"
    position = int(top - out.index[out["sid"] == "s1"][0])
    expected = discord_scores(fleet.loc[fleet["sid"] == "s1", "v"].to_numpy(), CYCLE)
    np.testing.assert_allclose(out.loc[out["sid"] == "s1", "score"].to_numpy(), expected)
    assert expected[position] == np.nanmax(expected)

"""STL seasonal baselines (``season: {period: 1d, method: stl}``): the spec, a seasonal shape
that a trend does not bias, partition-invariant features on a real cluster, gaps, refusals
naming the entity, and the install hint without statsmodels."""

from __future__ import annotations

import sys

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

import adp
from adp.context import Context, fit_context
from adp.context.stl import require_stl
from adp.errors import ConfigError, DataError

PER_DAY = 96  # 15-minute readings
SHAPE = 4 * np.sin(2 * np.pi * np.arange(PER_DAY) / PER_DAY)


def _fleet(days: int, *, slope: float = 0.0, noise: float = 0.3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = days * PER_DAY
    ts = pd.date_range("2026-03-01", periods=n, freq="15min")
    frames = []
    for s in range(4):
        value = 10.0 * s + np.tile(SHAPE, days) + slope * np.arange(n) / PER_DAY
        frames.append(
            pd.DataFrame({"sid": f"s{s}", "ts": ts, "v": value + rng.normal(0, noise, n)})
        )
    return pd.concat(frames, ignore_index=True)


def _context(method: str = "stl", **season: object) -> Context:
    return Context.from_spec(
        {
            "by": "sid",
            "time": "ts",
            "window": {"size": 4, "stats": ["mean", "diff"]},
            "season": {"period": "1d", "method": method, **season},
        }
    )


# -- the spec -----------------------------------------------------------------------------


def test_season_method_round_trips_and_defaults_to_profile() -> None:
    ctx = _context()
    assert ctx.season_method == "stl"
    assert ctx.to_spec()["season"]["method"] == "stl"
    assert Context.from_spec(ctx.to_spec()) == ctx
    plain = Context.from_spec({"time": "ts", "season": {"period": "1d"}})
    assert plain.season_method == "profile"
    assert "method" not in plain.to_spec()["season"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"time": "ts", "season": {"period": "1d", "method": "loess"}}, "context.season.method"),
        ({"time": "ts", "season": {"period": "1d", "method": 3}}, "context.season.method"),
    ],
)
def test_an_unknown_method_is_refused_naming_the_field(spec: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Context.from_spec(spec)


def test_stl_without_a_period_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"context\.season\.method.*period"):
        Context(time="ts", season_method="stl")


# -- what STL adds ------------------------------------------------------------------------


def _shape_error(fleet: pd.DataFrame, method: str) -> float:
    context = _context(method, bins=PER_DAY)  # not inferred from the steps of gappy data
    fitted = fit_context(context, dd.from_pandas(fleet, npartitions=2), ["v"])
    center = fitted.profile.center[:-1, :, 0]  # the last row is the pooled baseline
    shape = center - center.mean(axis=1, keepdims=True)
    return float(np.sqrt(np.mean((shape - SHAPE) ** 2)))


def test_a_trend_biases_the_profile_shape_but_not_stl(client: Client) -> None:
    # a level rising by 2 a day: the median per phase of the raw values ramps within each
    # day (a sawtooth); STL removes the trend before it estimates the seasonal shape
    trending = _fleet(5, slope=2.0, noise=0.5)
    assert _shape_error(trending, "stl") < 0.75 * _shape_error(trending, "profile")


def test_features_are_the_same_with_1_and_14_partitions(client: Client) -> None:
    fleet = _fleet(4, slope=0.5)
    fitted = fit_context(_context(), dd.from_pandas(fleet, npartitions=3), ["v"])
    names = fitted.feature_names
    out = []
    for npartitions in (1, 14):
        frame = fitted.transform(dd.from_pandas(fleet, npartitions=npartitions)).compute()
        out.append(frame.sort_values(["sid", "ts"]).reset_index(drop=True)[names])
    pd.testing.assert_frame_equal(out[0], out[1])
    assert np.isfinite(out[0].to_numpy()).all()


def test_the_fit_does_not_depend_on_the_partitioning(client: Client) -> None:
    fleet = _fleet(3)
    fits = [fit_context(_context(), dd.from_pandas(fleet, npartitions=n), ["v"]) for n in (1, 7)]
    np.testing.assert_array_equal(fits[0].profile.center, fits[1].profile.center)
    np.testing.assert_array_equal(fits[0].profile.spread, fits[1].profile.spread)


def test_an_out_of_season_value_has_its_entitys_largest_residual(client: Client) -> None:
    fleet = _fleet(4, slope=0.5)
    # sensor s2 at its daily trough reads its daily peak: inside its range, out of season
    trough = (fleet["sid"] == "s2") & (fleet["ts"] == pd.Timestamp("2026-03-03 18:00"))
    fleet.loc[trough, "v"] += 8.0
    fitted = fit_context(_context(), dd.from_pandas(fleet, npartitions=3), ["v"])
    out = fitted.transform(dd.from_pandas(fleet, npartitions=3)).compute()
    s2 = out[out["sid"] == "s2"]
    top = s2["v.diff_from_season"].abs().idxmax()
    assert top == fleet.index[trough][0]


def test_a_detector_with_an_stl_context_scores_new_rows_like_a_lookup(client: Client) -> None:
    fleet = _fleet(4)
    spec = _context().to_spec()
    det = adp.create_detector("iforest", n_estimators=50, random_state=0, context=spec)
    det.fit(dd.from_pandas(fleet, npartitions=2), features=["v"], random_state=0)
    assert det.context_.context.season_method == "stl"
    later = _fleet(1, seed=5)
    later["ts"] += pd.Timedelta(days=10)
    scores = [det.decision_function(dd.from_pandas(later, npartitions=n)).compute() for n in (1, 3)]
    pd.testing.assert_series_equal(scores[0].sort_index(), scores[1].sort_index())


# -- gaps and refusals --------------------------------------------------------------------


def test_gaps_are_interpolated_for_the_fit(client: Client) -> None:
    fleet = _fleet(5, slope=2.0, noise=0.2)
    kept = fleet.sample(frac=0.8, random_state=1).sort_index()  # a fifth of the rows lost
    gappy = _shape_error(kept, "stl")
    assert gappy < 2 * _shape_error(fleet, "stl")
    assert gappy < _shape_error(kept, "profile")


def test_an_entity_at_a_coarser_step_is_decomposed_at_its_own_step(client: Client) -> None:
    fleet = _fleet(5, slope=2.0, noise=0.2)
    hourly = fleet[(fleet["sid"] != "s3") | (fleet["ts"].dt.minute == 0)]  # s3: every 4th
    fitted = fit_context(_context(bins=PER_DAY), dd.from_pandas(hourly, npartitions=2), ["v"])
    shapes = fitted.profile.center[:4, :, 0] - fitted.profile.center[:4, :, 0].mean(axis=1)[:, None]
    errors = np.sqrt(np.mean((shapes - SHAPE) ** 2, axis=1))
    assert np.isfinite(shapes).all()
    assert errors[3] < 2 * errors[:3].max()


def test_an_outage_longer_than_a_period_splits_the_series(client: Client) -> None:
    fleet = _fleet(9, slope=1.0, noise=0.2)
    outage = (fleet["ts"] >= pd.Timestamp("2026-03-03")) & (
        fleet["ts"] < pd.Timestamp("2026-03-08")
    )
    # s0: 5 of its 9 days missing (more than half, so interpolating across the outage is
    # refused); the 2 days before and the 2 after are decomposed apart
    holed = fleet[(fleet["sid"] != "s0") | ~outage]
    fitted = fit_context(_context(bins=PER_DAY), dd.from_pandas(holed, npartitions=2), ["v"])
    centers = fitted.profile.center[:4, :, 0]
    errors = np.sqrt(np.mean((centers - centers.mean(axis=1)[:, None] - SHAPE) ** 2, axis=1))
    assert errors[0] < 2 * errors[1:].max()


def test_an_irregularly_sparse_entity_is_refused_by_name(client: Client) -> None:
    fleet = _fleet(4)
    kept = np.random.default_rng(2).random(len(fleet)) < 0.3
    sparse = fleet[(fleet["sid"] != "s3") | kept]
    with pytest.raises(DataError, match=r"entity 's3'.*no rows in \d+%.*context\.season\.bins"):
        fit_context(_context(bins=PER_DAY), dd.from_pandas(sparse, npartitions=2), ["v"])


def test_an_entity_shorter_than_two_periods_is_refused_by_name(client: Client) -> None:
    fleet = _fleet(4)
    short = fleet[(fleet["sid"] != "s1") | (fleet["ts"] < pd.Timestamp("2026-03-02 12:00"))]
    with pytest.raises(DataError, match=r"entity 's1'.*no stretch of 2 periods"):
        fit_context(_context(), dd.from_pandas(short, npartitions=2), ["v"])


def test_without_statsmodels_the_error_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "statsmodels.tsa.seasonal", None)  # import fails
    with pytest.raises(ConfigError, match=r"pip install 'adp\[timeseries\]'"):
        require_stl()
    frame = dd.from_pandas(_fleet(2), npartitions=1)
    with pytest.raises(ConfigError, match="statsmodels"):
        fit_context(_context(), frame, ["v"])

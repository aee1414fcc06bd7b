"""Context features on a real cluster: partition-invariant features, baselines and scores,
residuals that make a seasonal peak normal, names that explanations use, and fitted state
that travels with the model."""

from __future__ import annotations

import pickle

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.base import clone

import adp
from adp.context import Context, fit_context
from adp.errors import ConfigError, DataError

CONTEXT = {
    "by": "sid",
    "time": "ts",
    "window": {"size": 6, "stats": ["mean", "std", "diff"]},
    "season": {"period": "1d"},
}
SENSORS, DAYS, PER_DAY = 6, 3, 96  # 15-minute readings


def _fleet(seed: int = 0, days: int = DAYS, start: str = "2026-03-01") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=days * PER_DAY, freq="15min")
    daily = np.sin(2 * np.pi * np.arange(len(ts)) / PER_DAY)
    frames = []
    for s in range(SENSORS):
        level = 10.0 * s
        frames.append(
            pd.DataFrame(
                {
                    "sid": f"s{s}",
                    "ts": ts,
                    "v": level + 4 * daily + rng.normal(0, 0.3, len(ts)),
                    "w": 1 + rng.normal(0, 0.1, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    frame = _fleet()
    # sensor s1 at a trough reads its daily peak: inside its range, out of its season
    trough = frame.index[(frame["sid"] == "s1") & (frame["ts"] == pd.Timestamp("2026-03-02 18:00"))]
    frame.loc[trough, "v"] = 10.0 + 4.0
    frame.attrs["injected"] = int(trough[0])
    return frame


@pytest.fixture(scope="module")
def fitted(client: Client, fleet: pd.DataFrame) -> adp.Detector:
    det = adp.create_detector(
        "iforest", contamination=0.002, n_estimators=100, random_state=0, context=CONTEXT
    )
    return det.fit(dd.from_pandas(fleet, npartitions=3), features=["v", "w"], random_state=0)


def _by_key(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["sid", "ts"], kind="stable").reset_index(drop=True)


def test_features_and_scores_are_the_same_with_1_and_14_partitions(
    fitted: adp.Detector, fleet: pd.DataFrame
) -> None:
    one = dd.from_pandas(fleet, npartitions=1)
    many = dd.from_pandas(fleet, npartitions=14)
    assert many.npartitions == 14
    names = fitted.features_
    feats = [fitted.context_.transform(d) for d in (one, many)]
    assert feats[1].npartitions == 14
    detected = [fitted.detect(d, key=["sid", "ts"], explain=2) for d in (one, many)]
    a, b, da, db = dask.compute(*feats, *detected)
    a, b, da, db = _by_key(a), _by_key(b), _by_key(da), _by_key(db)
    assert len(a) == len(b) == len(fleet)
    np.testing.assert_array_equal(a[names].to_numpy(), b[names].to_numpy())
    assert a[names].std().min() > 0, "constant features could not show a difference"
    np.testing.assert_array_equal(da["score"].to_numpy(), db["score"].to_numpy())
    assert da["is_anomaly"].equals(db["is_anomaly"])
    assert da["top_features"].astype(str).equals(db["top_features"].astype(str))


def test_baselines_are_the_same_whatever_the_partitioning(
    client: Client, fleet: pd.DataFrame
) -> None:
    ctx = Context.from_spec(CONTEXT)
    one = fit_context(ctx, dd.from_pandas(fleet, npartitions=1), ["v", "w"])
    many = fit_context(ctx, dd.from_pandas(fleet, npartitions=14), ["v", "w"])
    assert one.bins == many.bins == PER_DAY  # the period over the 15-minute step
    assert list(one.profile.entities) == [f"s{s}" for s in range(SENSORS)]
    np.testing.assert_array_equal(one.profile.center, many.profile.center)
    np.testing.assert_array_equal(one.profile.scale, many.profile.scale)
    # each sensor's profile follows its own level and daily cycle
    peak, trough = PER_DAY // 4, 3 * PER_DAY // 4
    center = one.profile.center[:SENSORS, :, 0]
    np.testing.assert_allclose(center[:, peak] - center[:, trough], 8.0, atol=0.8)
    np.testing.assert_allclose(center[:, 0], 10.0 * np.arange(SENSORS), atol=0.5)


def test_an_out_of_season_value_is_flagged_and_explained_by_its_residual(
    fitted: adp.Detector, fleet: pd.DataFrame
) -> None:
    injected = fleet.attrs["injected"]
    scored = fitted.detect(dd.from_pandas(fleet, npartitions=4), explain=2).compute()
    assert scored.loc[injected, "is_anomaly"]
    assert scored["score"].rank(ascending=False)[injected] <= 2  # the row or the one after
    assert all(name.startswith("v.") for name in scored.loc[injected, "top_features"])
    assert set(fitted.features_) >= {"v.diff_from_season", "v.roll_mean_6", "w.diff"}

    plain = adp.create_detector("iforest", n_estimators=100, random_state=0)
    plain.fit(dd.from_pandas(fleet, npartitions=3), features=["v", "w"])
    raw = plain.decision_function(dd.from_pandas(fleet, npartitions=4)).compute()
    # on raw readings the same value is ordinary: hundreds of rows score higher
    assert (raw > raw.loc[injected]).sum() > 100


def test_the_fitted_context_travels_with_the_model(
    fitted: adp.Detector, fleet: pd.DataFrame
) -> None:
    later = _fleet(seed=5, days=1, start="2026-03-04")  # a new day, scored later
    later.loc[later.index[-3:], "sid"] = "s-new"  # an entity not seen at fit time
    restored = pickle.loads(pickle.dumps(fitted))
    a = fitted.decision_function(dd.from_pandas(later, npartitions=2))
    b = restored.decision_function(dd.from_pandas(later, npartitions=5))
    a, b = dask.compute(a, b)
    np.testing.assert_array_equal(a.sort_index().to_numpy(), b.sort_index().to_numpy())
    assert np.isfinite(a).all() and len(a) == len(later)
    # the stored baselines are used, not refitted on the scored rows
    one_sensor = later[later["sid"] == "s2"]
    alone = fitted.context_.transform(dd.from_pandas(one_sensor, npartitions=1)).compute()
    within = fitted.context_.transform(dd.from_pandas(later, npartitions=3)).compute()
    within = within[within["sid"] == "s2"]
    cols = fitted.features_
    np.testing.assert_array_equal(_by_key(alone)[cols].to_numpy(), _by_key(within)[cols].to_numpy())

    copy = clone(fitted)
    assert not copy.is_fitted and copy.get_params() == fitted.get_params()
    assert copy.get_params()["context"] == CONTEXT


def test_mistakes_fail_in_one_line_naming_the_column(client: Client, fleet: pd.DataFrame) -> None:
    with pytest.raises(ConfigError, match="context.season.period"):
        adp.create_detector("iforest", context={**CONTEXT, "season": {"period": "often"}})
    det = adp.create_detector("iforest", context={**CONTEXT, "by": "sensor"})
    with pytest.raises(DataError, match="context.by: column 'sensor' is not in the data"):
        det.fit(dd.from_pandas(fleet, npartitions=2), features=["v"])
    as_text = fleet.assign(ts=fleet["ts"].astype(str))
    det = adp.create_detector("iforest", context=CONTEXT)
    with pytest.raises(DataError, match="context.time: column 'ts' is of type"):
        det.fit(dd.from_pandas(as_text, npartitions=2), features=["v"])


def test_one_series_ordered_by_a_number_with_missing_values_imputed(client: Client) -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame({"t": np.arange(600)[::-1], "v": rng.normal(size=600)})
    frame.loc[7, "v"] = np.nan  # a hole: imputed with the fit-time median of its features
    det = adp.create_detector("hbos", context={"time": "t", "window": 5})
    with pytest.raises(DataError, match="v.diff_from_median"):
        det.fit(dd.from_pandas(frame, npartitions=3)).decision_function(
            dd.from_pandas(frame, npartitions=3)
        ).compute()
    det.fit(dd.from_pandas(frame, npartitions=3), missing="impute_median")
    assert det.features_[0] == "v.diff_from_median" and len(det.features_) == 4
    one = det.decision_function(dd.from_pandas(frame, npartitions=1))
    six = det.decision_function(dd.from_pandas(frame, npartitions=6))
    one, six = dask.compute(one, six)
    np.testing.assert_array_equal(one.sort_index().to_numpy(), six.sort_index().to_numpy())
    assert np.isfinite(one).all() and len(one) == len(frame)


def test_a_mostly_constant_entity_is_scaled_by_its_mean_absolute_residual() -> None:
    from adp.context.profile import MAD_TO_STD, fit_partition

    rng = np.random.default_rng(0)
    idle = np.zeros(100)
    idle[::10] = 1000.0  # 90% zeros: the median absolute residual is 0
    noisy = rng.normal(5.0, 2.0, size=100)
    X = np.concatenate([idle, noisy])[:, None]
    codes = np.repeat([0, 1], 100)
    profile = fit_partition(X, codes, np.array(["idle", "noisy"]), np.zeros(200, int), 1)
    # sqrt(pi / 2) times the mean absolute residual (100), not the tiny floor (1e-6)
    assert profile.spread[0, 0] == pytest.approx(1.2533 * 100.0)
    residual = np.abs(noisy - np.median(noisy))
    assert profile.spread[1, 0] == pytest.approx(MAD_TO_STD * np.median(residual))
    # so an ordinary reading of the idle entity is a few scales away, not 1e9 of them
    assert 1000.0 / profile.spread[0, 0] < 10

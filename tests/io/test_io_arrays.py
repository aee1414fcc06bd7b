"""netCDF and zarr stores (local and on S3) as lazy feature frames, sliding windows over
time, and scores mapped back onto the original coordinates."""

from __future__ import annotations

import warnings

import dask
import numpy as np
import pandas as pd
import pytest

import adp
from adp.errors import DataError
from adp.io.arrays import read_array

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _dataset(nt: int = 60, ns: int = 5, seed: int = 0):
    import xarray as xr

    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {
            "temp": (("time", "sensor"), rng.normal(20, 2, size=(nt, ns))),
            "hum": (("time", "sensor"), rng.uniform(0, 1, size=(nt, ns)).astype("float32")),
            "site_mean": (("time",), rng.normal(size=nt)),
        },
        coords={
            "time": pd.date_range("2026-11-01", periods=nt, freq="h"),
            "sensor": np.arange(100, 100 + ns),
        },
    )


@pytest.fixture
def stores(tmp_path):
    ds = _dataset()
    nc, zarr = str(tmp_path / "s.nc"), str(tmp_path / "s.zarr")
    ds.to_netcdf(nc)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.chunk({"time": 16}).to_zarr(zarr, mode="w")
    return ds, nc, zarr


def _check_rows(ds, frame: pd.DataFrame, window: int = 1) -> None:
    nt, ns = ds.sizes["time"], ds.sizes["sensor"]
    assert len(frame) == (nt - window + 1) * ns
    frame = frame.sort_index()
    temp = ds["temp"].values[window - 1 :].reshape(-1)
    np.testing.assert_allclose(frame["temp"].to_numpy(), temp)
    assert (frame["sensor"].to_numpy() == np.tile(ds["sensor"].values, nt - window + 1)).all()
    assert (frame["time"].to_numpy() == np.repeat(ds["time"].values[window - 1 :], ns)).all()


def test_netcdf_and_zarr_become_one_row_per_time_step_and_sensor(client, stores):
    ds, nc, zarr = stores
    for uri, expected_parts in ((nc, 3), (zarr, 4)):
        ddf = adp.read(uri, chunks={"time": 20}) if uri == nc else adp.read(uri)
        assert ddf.npartitions == expected_parts
        assert ddf.index.name == "row" and ddf.known_divisions
        assert {"temp", "hum", "time", "sensor"} <= set(ddf.columns)
        assert "site_mean" not in ddf.columns  # fewer dimensions: not a per-sensor feature
        _check_rows(ds, ddf.compute())


def _refuse(*args, **kwargs):
    raise AssertionError("something was computed")


def test_opening_is_lazy(stores):
    _, nc, zarr = stores
    with dask.config.set(scheduler=_refuse):
        read_array(nc, chunks={"time": 10})
        read_array(zarr, window=4)


def test_sliding_windows_add_lag_features(client, stores):
    ds, _, zarr = stores
    ddf = adp.read(zarr, window=3, variables=["temp"])
    assert list(ddf.columns) == ["time", "sensor", "temp", "temp_lag1", "temp_lag2"]
    frame = ddf.compute().sort_index()
    _check_rows(ds, frame, window=3)
    np.testing.assert_allclose(frame["temp_lag2"], ds["temp"].values[:-2].reshape(-1))
    np.testing.assert_allclose(frame["temp_lag1"], ds["temp"].values[1:-1].reshape(-1))


def test_zarr_on_s3(client, s3, stores):
    ds, _, zarr = stores
    bucket = s3.bucket()
    s3.fs().put(zarr, f"{bucket}/s.zarr", recursive=True)
    ddf = adp.read(f"s3://{bucket}/s.zarr", storage_options=s3.storage_options)
    _check_rows(ds, ddf.compute())


def test_netcdf_on_s3(client, s3, stores):
    ds, nc, _ = stores
    bucket = s3.bucket()
    s3.fs().put(nc, f"{bucket}/s.nc")
    ddf = adp.read(f"s3://{bucket}/s.nc", chunks={"time": 20}, storage_options=s3.storage_options)
    assert ddf.npartitions == 3
    _check_rows(ds, ddf.compute())


def test_scores_and_flags_map_back_onto_the_coordinates(client, stores):
    ds, _, zarr = stores
    ddf = adp.read(zarr, window=2)
    det = adp.create_detector("hbos", contamination=0.05).fit(ddf, exclude=["sensor"])
    scored = det.detect(ddf, key=["time", "sensor"])
    arrays = adp.to_xarray(scored, zarr)
    assert arrays["score"].dims == ("time", "sensor")
    assert arrays["score"].chunks is not None  # lazy: one block per partition
    assert (arrays["sensor"].values == ds["sensor"].values).all()
    out = arrays.compute()
    flat = scored.compute()
    t = flat.index.to_numpy() // ds.sizes["sensor"]
    s = flat.index.to_numpy() % ds.sizes["sensor"]
    np.testing.assert_allclose(out["score"].values[t, s], flat["score"].to_numpy())
    assert (out["is_anomaly"].values[t, s] == flat["is_anomaly"].to_numpy()).all()
    assert np.isnan(out["score"].values[0]).all()  # no full window at the first step
    assert int(out["is_anomaly"].sum()) == int(flat["is_anomaly"].sum())
    # scores that lost their divisions (read back from Parquet, repartitioned) still map
    unknown = scored.clear_divisions()
    again = adp.to_xarray(unknown, zarr)
    np.testing.assert_array_equal(again["score"].values, out["score"].values)


def test_to_xarray_refuses_a_frame_that_lost_its_positions(client, stores):
    _, _, zarr = stores
    ddf = adp.read(zarr)
    scored = ddf[["temp"]].rename(columns={"temp": "score"}).reset_index(drop=True)
    with pytest.raises(DataError, match="row"):
        adp.to_xarray(scored, zarr)

# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # xarray sensors: scores back on the coordinates
# A zarr store of sensor readings on `(time, sensor)` becomes one row per time step and
# sensor, with sliding-window lag features; every row is scored on the cluster, and
# `adp.to_xarray` puts `score` and `is_anomaly` back onto the store's own coordinates.
#
# Environment variables (the tests set them; the defaults suit a run by hand):
#
# - `ADP_SCHEDULER`: the Dask scheduler's address (default: what `adp.connect()` picks:
#   `DASK_SCHEDULER_ADDRESS`, else a new local cluster)
# - `ADP_DATA_DIR`: where the zarr store is written (default `data/notebooks`)

# %%
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr

import adp

data_dir = Path(os.environ.get("ADP_DATA_DIR", "data/notebooks")).absolute()
client = adp.connect(os.environ.get("ADP_SCHEDULER") or None)

# %% [markdown]
# ## A station of 12 sensors, 10 days of hourly readings
# Temperature and humidity follow a daily cycle; five readings get a heat spike at known
# `(time, sensor)` coordinates.

# %%
rng = np.random.default_rng(5)
times = pd.date_range("2026-11-01", periods=240, freq="h")
sensors = np.arange(100, 112)
daily = np.sin(2 * np.pi * (times.hour.to_numpy() - 9) / 24)[:, None]
temp = 15 + 6 * daily + rng.normal(0, 0.6, (len(times), len(sensors)))
humidity = 0.6 - 0.2 * daily + rng.normal(0, 0.03, (len(times), len(sensors)))
spikes = [(30, 101), (75, 104), (120, 106), (161, 109), (205, 111)]  # (hour, sensor)
for hour, sensor in spikes:
    temp[hour, sensor - 100] += 9.0
    humidity[hour, sensor - 100] -= 0.25
station = xr.Dataset(
    {"temp": (("time", "sensor"), temp), "humidity": (("time", "sensor"), humidity)},
    coords={"time": times, "sensor": sensors},
)
store = str(data_dir / "station.zarr")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # zarr's notes on its format version
    station.chunk({"time": 48}).to_zarr(store, mode="w")
station

# %% [markdown]
# ## Rows with a sliding window, scored on the cluster
# `window=3` adds `temp_lag1`, `temp_lag2`, `humidity_lag1`, ...: each row sees the last
# three hours of its sensor. One partition per time chunk of the store. `persist()` keeps
# the scores on the workers for the steps below.

# %%
ddf = adp.read(store, window=3)
features = [c for c in ddf.columns if c.startswith(("temp", "humidity"))]
detector = adp.create_detector("isolation_forest", contamination=0.01, random_state=0)
detector.fit(ddf, features=features)
scored = detector.detect(ddf, key=["time", "sensor"]).persist()
rows = (len(times) - 2) * len(sensors)  # the first two hours lack a full window
assert ddf.npartitions == 5 and len(scored) == rows
print(f"{rows:,} rows in {ddf.npartitions} partitions, features {features}")

# %% [markdown]
# ## Back onto the coordinates
# The result is an `xarray.Dataset` on `(time, sensor)` with the store's coordinates: lazy,
# one block per partition. Cells without a full window are NaN (and not flagged).

# %%
arrays = adp.to_xarray(scored, like=store).compute()
assert arrays["score"].dims == ("time", "sensor")
assert (arrays["time"].values == times.values).all()
assert (arrays["sensor"].values == sensors).all()
assert np.isnan(arrays["score"].isel(time=slice(0, 2))).all()
assert int(arrays["is_anomaly"].sum()) == int(scored["is_anomaly"].sum().compute())
found = [bool(arrays["is_anomaly"].sel(time=times[hour], sensor=sensor)) for hour, sensor in spikes]
assert all(found), list(zip(spikes, found, strict=True))
print(
    f"{int(arrays['is_anomaly'].sum())} cells flagged; all {len(spikes)} injected spikes "
    "flagged at their (time, sensor) coordinates"
)

# %%
fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
arrays["score"].plot(x="time", y="sensor", ax=top, cmap="viridis")
top.scatter(times[[h for h, _ in spikes]], [s for _, s in spikes], marker="x", c="red")
top.set_title("score on (time, sensor); injected spikes marked x")
hour, sensor = spikes[2]
station["temp"].sel(sensor=sensor).plot(ax=bottom, label="temp")
hits = arrays["is_anomaly"].sel(sensor=sensor)
bottom.scatter(
    times[hits.values],
    station["temp"].sel(sensor=sensor).values[hits.values],
    c="red",
    zorder=3,
    label="flagged",
)
bottom.set_title(f"sensor {sensor}")
bottom.legend()
fig.tight_layout()
plt.show()

# %%
client.close()

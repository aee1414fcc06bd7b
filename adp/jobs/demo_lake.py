"""The demo lake: a fleet of sensors with daily seasonality, noise and injected anomalies.

Each sensor reports four correlated channels every five minutes. Four kinds of anomaly are
injected at known positions (``is_injected`` and ``anomaly_kind`` columns):

- ``spike``: one reading of one channel jumps by 6 to 10 standard deviations;
- ``drift``: one channel ramps away over two to four hours (labelled once it has moved by
  more than two standard deviations);
- ``stuck``: the current channel reads zero for one to three hours (a sensor dropout);
- ``joint``: temperature and pressure break their correlation, each within its own range.

One Parquet file per day; generation runs one task per day on the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import pandas as pd

CHANNELS = ["temperature", "pressure", "vibration", "current"]
STEP = pd.Timedelta(minutes=5)
PER_DAY = 288


@dataclass(frozen=True)
class DemoLake:
    """What :func:`generate` wrote."""

    path: Path
    rows: int
    files: int
    injected: int


def _day(day: int, start: pd.Timestamp, sensors: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng([seed, day])
    n = PER_DAY
    ts = pd.date_range(start + pd.Timedelta(days=day), periods=n, freq=STEP)
    hour = (ts.hour + ts.minute / 60).to_numpy()
    daily = np.sin(2 * np.pi * (hour - 9) / 24)
    frames = []
    for s in range(sensors):
        srng = np.random.default_rng([seed, 10_000 + s])  # per-sensor constants
        base_t = 20 + srng.normal(0, 3)
        load = 1 + 0.5 * daily + rng.normal(0, 0.08, n)
        temperature = base_t + 4 * daily + rng.normal(0, 0.5, n)
        pressure = 100 + 1.5 * (temperature - base_t) + rng.normal(0, 0.6, n)
        vibration = 0.4 * load + rng.normal(0, 0.05, n)
        current = 10 * load + rng.normal(0, 0.4, n)
        values = np.column_stack([temperature, pressure, vibration, current])
        kind = np.full(n, "", dtype=object)
        sigma = values.std(axis=0)

        for _ in range(rng.poisson(1.2)):  # spikes
            i, c = int(rng.integers(n)), int(rng.integers(4))
            values[i, c] += rng.choice([-1, 1]) * rng.uniform(6, 10) * sigma[c]
            kind[i] = "spike"
        if rng.random() < 0.15:  # drift
            length = int(rng.integers(24, 49))
            i0, c = int(rng.integers(0, n - length)), int(rng.integers(4))
            ramp = np.linspace(0, rng.uniform(5, 8), length) * sigma[c]
            values[i0 : i0 + length, c] += ramp
            kind[i0 : i0 + length][ramp > 2 * sigma[c]] = "drift"
        if rng.random() < 0.1:  # stuck at zero
            length = int(rng.integers(12, 37))
            i0 = int(rng.integers(0, n - length))
            values[i0 : i0 + length, 3] = 0.0
            kind[i0 : i0 + length] = "stuck"
        if rng.random() < 0.15:  # joint deviation
            length = int(rng.integers(6, 19))
            i0 = int(rng.integers(0, n - length))
            values[i0 : i0 + length, 1] -= 3 * (values[i0 : i0 + length, 0] - base_t) + 4.0
            kind[i0 : i0 + length] = "joint"

        frame = pd.DataFrame(values, columns=CHANNELS)
        frame.insert(0, "ts", ts)
        frame.insert(0, "sensor_id", f"s{s:03d}")
        frame["anomaly_kind"] = kind
        frame["is_injected"] = kind != ""
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _write_day(day: int, start: pd.Timestamp, sensors: int, seed: int, path: Path) -> int:
    frame = _day(day, start, sensors, seed)
    frame.to_parquet(path / f"day-{day:03d}.parquet", index=False)
    return int(frame["is_injected"].sum())


def generate(
    path: str | Path,
    *,
    sensors: int = 50,
    days: int = 14,
    start: str = "2026-11-01",
    seed: int = 7,
) -> DemoLake:
    """Write the demo lake: one Parquet file per day, ``sensors * 288`` rows each.

    Parameters
    ----------
    path : str or Path
        Folder to write; existing ``day-*.parquet`` files in it are replaced.
    sensors, days : int
        Fleet size and number of days.
    start : str
        First day.
    seed : int
        Same seed, same lake.

    Returns
    -------
    DemoLake
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("day-*.parquet"):
        old.unlink()
    begin = pd.Timestamp(start)
    tasks = [dask.delayed(_write_day)(d, begin, sensors, seed, folder) for d in range(days)]
    injected = sum(dask.compute(*tasks))
    return DemoLake(folder, sensors * PER_DAY * days, days, int(injected))

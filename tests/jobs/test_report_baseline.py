"""The report's baseline figure: readings over the fitted context's seasonal baseline."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd

import adp
from adp.jobs import report_baseline


def _fleet(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2026-01-01", periods=288 * 3, freq="5min")
    phase = 2 * np.pi * (ts.hour * 60 + ts.minute).to_numpy() / 1440.0
    frames = []
    for i, entity in enumerate(["e0", "e1"]):
        frames.append(
            pd.DataFrame(
                {
                    "entity": entity,
                    "ts": ts,
                    "a": 10 + i + 3 * np.sin(phase) + rng.normal(0, 0.2, len(ts)),
                    "b": 50 + 5 * np.cos(phase) + rng.normal(0, 0.5, len(ts)),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _fitted_context(frame: pd.DataFrame) -> object:
    context = {"by": "entity", "time": "ts", "season": {"period": "1d"}}
    detector = adp.create_detector("iforest", random_state=0, context=context)
    detector.fit(dd.from_pandas(frame, npartitions=3))
    return detector.context_


def test_the_figure_shows_the_column_the_flags_deviate_in(client) -> None:
    frame = _fleet()
    rows = frame.index[(frame["entity"] == "e1")][300:320]
    frame.loc[rows, "b"] += 40.0  # far off e1's baseline in b, not in a
    context = _fitted_context(frame)
    frame["is_anomaly"] = False
    frame.loc[rows, "is_anomaly"] = True
    e1 = frame[frame["entity"] == "e1"]
    center, scale = context.baseline(e1)
    values = e1[["a", "b"]].to_numpy()
    flags = e1["is_anomaly"].to_numpy()
    assert report_baseline._worst_column(values, center, scale, flags) == 1
    # the baseline follows the season: its daily swing is that of b's cosine (5 either way)
    assert 8.0 < np.ptp(center[:, 1]) < 12.0
    page = report_baseline.baseline_figure(frame, context, ["e1", "e0"])
    assert page.startswith("<svg")
    assert "e1" in page and "e0" in page


def test_the_figure_applies_only_to_the_contexts_own_columns(client) -> None:
    context = _fitted_context(_fleet(1))
    assert report_baseline.applies(context, "entity", "ts")
    assert not report_baseline.applies(context, "other", "ts")
    assert not report_baseline.applies(context, "entity", None)
    assert not report_baseline.applies(None, "entity", "ts")

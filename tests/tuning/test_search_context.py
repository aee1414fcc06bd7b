"""``adp.search`` with a context: the trials (and the selector) see the context's
features, and the winner carries the context, so it scores raw rows."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import adp

CONTEXT = {"by": "sensor", "time": "ts", "season": {"period": "1d"}}


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    """Sensors with a daily cycle; an anomaly is a reading at the level of the other end
    of the day: ordinary for the table, not for its time of day."""
    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-02-01", periods=288 * 4, freq="5min")
    phase = 2 * np.pi * (ts.hour * 60 + ts.minute).to_numpy() / 1440.0
    frames = []
    for i in range(4):
        value = 20 + 5 * np.sin(phase) + rng.normal(0, 0.3, len(ts))
        label = np.zeros(len(ts), dtype=bool)
        hit = rng.choice(len(ts), 12, replace=False)
        label[hit] = True
        value[hit] = 20 - 5 * np.sin(phase[hit]) + rng.normal(0, 0.3, 12)
        frames.append(pd.DataFrame({"sensor": f"s{i}", "ts": ts, "value": value, "label": label}))
    return pd.concat(frames, ignore_index=True)


def _auc(detector: adp.Detector, frame: pd.DataFrame) -> float:
    scores = detector.decision_function(dd.from_pandas(frame, npartitions=3)).compute()
    return float(roc_auc_score(frame["label"], scores.loc[frame.index]))


@pytest.mark.slow
def test_a_labelled_search_with_a_context_finds_what_the_raw_values_hide(client, fleet) -> None:
    ddf = dd.from_pandas(fleet, npartitions=4)
    space = {"isolation_forest": {"n_estimators": [50, 100]}, "hbos": None}
    common = {"label": "label", "max_trials": 3, "cv": 2, "random_state": 0}
    plain = adp.search(ddf, space, features=["value"], exclude=["sensor", "ts"], **common)
    with_context = adp.search(ddf, space, features=["value"], context=CONTEXT, **common)
    assert with_context.features == ["value"]
    assert with_context.best_score > plain.best_score + 0.2
    best = with_context.best_detector
    assert best is not None and best.is_fitted and best.context_ is not None
    assert best.features_ == ["value.diff_from_season"]
    assert _auc(best, fleet) > 0.95 > _auc(plain.best_detector, fleet)


@pytest.mark.slow
def test_the_selector_chooses_on_the_context_features(client, fleet) -> None:
    ddf = dd.from_pandas(fleet.drop(columns="label"), npartitions=4)
    result = adp.search(ddf, features=["value"], context=CONTEXT, random_state=0)
    best = result.best_detector
    assert result.engine == "selector" and best is not None and best.context_ is not None
    assert _auc(best, fleet) > 0.95


@pytest.mark.slow
def test_a_search_job_with_a_context_registers_a_model_that_carries_it(
    client, fleet, tmp_path
) -> None:
    import io

    from rich.console import Console

    from adp.jobs.search import run_search_job
    from adp.jobs.spec import JobSpec
    from adp.models.api import ModelRegistry

    lake = tmp_path / "fleet.parquet"
    fleet.to_parquet(lake)
    spec = JobSpec.from_dict(
        {
            "name": "search-context",
            "source": {"uri": str(lake), "features": ["value"], "key": []},
            "context": CONTEXT,
            "threshold": {"contamination": 0.02},
            "search": {
                "space": {"isolation_forest": None, "hbos": None},
                "label": "label",
                "max_trials": 2,
                "cv": 2,
                "random_state": 0,
                "register": {"name": "fleet-context"},
            },
        }
    )
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    result = run_search_job(spec, client, console=Console(file=io.StringIO()), registry=registry)
    assert result.extra["registered"] == "fleet-context@1"
    loaded = registry.load("fleet-context@1")
    assert loaded.context_ is not None and _auc(loaded, fleet) > 0.95

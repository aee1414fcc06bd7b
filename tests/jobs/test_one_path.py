"""A job scores with the one score path: a registered model's fitted missing policy and
medians, the same scores and flags as a notebook's ``detect``, and spec checks."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import adp
from adp.errors import SpecError
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec

FEATURES = ["a", "b", "c"]
KEY = ["sensor_id", "seq"]


def _frame(rows: int, shift: float, seed: int, sensor: str = "s0") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(shift, 1.0, size=(rows, 3)), columns=FEATURES)
    frame["sensor_id"] = sensor
    frame["seq"] = np.arange(rows)
    return frame


def _write_lake(folder: Path, frame: pd.DataFrame, files: int = 3) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, chunk in enumerate(np.array_split(np.arange(len(frame)), files)):
        frame.iloc[chunk].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


@pytest.fixture
def registry_config(tmp_path):
    config = {
        "adp.models.url": f"sqlite:///{tmp_path / 'models.db'}",
        "adp.models.store": str(tmp_path / "store"),
    }
    with dask.config.set(config):
        yield config


def _job(source: Path, out: Path, model: str, **source_extra) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "registered",
            "source": {"uri": str(source), "key": KEY, **source_extra},
            "detector": {"model": model},
            "threshold": {"contamination": 0.05},
            "output": {"uri": str(out)},
            "profile": False,
        }
    )


def test_registered_model_imputes_new_data_with_its_fit_time_medians(
    client, tmp_path, registry_config
) -> None:
    """Fit with impute_median on A, register, ``adp run`` on B (other medians, NaNs):
    B's missing values are filled with A's medians, never B's own."""
    a = _frame(3000, shift=0.0, seed=0)
    a.loc[a.sample(frac=0.05, random_state=0).index, "a"] = np.nan
    train = dd.from_pandas(a, npartitions=3)
    det = adp.create_detector("isolation_forest", n_estimators=50, random_state=0)
    det.fit(train, FEATURES, key=KEY, missing="impute_median")
    assert det.missing_ == "impute_median"
    medians_a = dict(det.medians_)
    assert set(medians_a) == set(FEATURES)
    adp.models.register(det, "imputer")

    # B is shifted by 4: its own medians are far from A's.
    b = _frame(1200, shift=4.0, seed=1)
    nan_rows = np.arange(0, 1200, 40)  # 30 rows with a missing "a"
    twins_a = b.iloc[nan_rows].assign(a=medians_a["a"], seq=b["seq"].iloc[nan_rows] + 10_000)
    b_median_a = float(b["a"].median())
    twins_b = b.iloc[nan_rows].assign(a=b_median_a, seq=b["seq"].iloc[nan_rows] + 20_000)
    b.loc[b.index[nan_rows], "a"] = np.nan
    lake = _write_lake(tmp_path / "b", pd.concat([b, twins_a, twins_b], ignore_index=True))
    assert abs(b_median_a - medians_a["a"]) > 3

    out = tmp_path / "scores"
    result = run_job(_job(lake, out, "imputer@1"), client=client, show_progress=False)
    assert result.rows == 1200 + 2 * len(nan_rows)  # impute keeps every row
    scores = pd.read_parquet(out).set_index("seq")["score"]
    imputed = scores.loc[nan_rows].to_numpy()
    with_a_medians = scores.loc[nan_rows + 10_000].to_numpy()
    with_b_medians = scores.loc[nan_rows + 20_000].to_numpy()
    np.testing.assert_array_equal(imputed, with_a_medians)
    assert not np.allclose(imputed, with_b_medians)

    # A spec that asks for another policy than the model's fitted one is refused.
    with pytest.raises(SpecError, match=r"source.missing is 'drop'.*impute_median"):
        run_job(
            _job(lake, tmp_path / "other", "imputer@1", missing="drop"),
            client=client,
            show_progress=False,
        )


def test_notebook_and_job_give_the_same_scores_and_flags(client, tmp_path, registry_config) -> None:
    frames = [_frame(700, 0.0, seed=i, sensor=f"s{i}") for i in range(3)]
    for i, frame in enumerate(frames):  # a few far rows per sensor
        frame.loc[frame.index[::97], FEATURES] += 6.0 * (i + 1)
    lake = _write_lake(tmp_path / "lake", pd.concat(frames, ignore_index=True))
    ddf = adp.read(str(lake))
    det = adp.create_detector("isolation_forest", contamination=0.04, random_state=0)
    det.fit(ddf, FEATURES, sample_rows=1000, random_state=0, key=KEY)
    adp.models.register(det, "same-path")
    notebook = det.detect(ddf, key=KEY).compute().set_index(KEY).sort_index()

    spec = JobSpec.from_dict(
        {
            "name": "same-path",
            "source": {"uri": str(lake), "key": KEY},
            "detector": {"model": "same-path@1"},  # no threshold: the model's contamination
            "output": {"uri": str(tmp_path / "scores")},
            "profile": False,
        }
    )
    result = run_job(spec, client=client, show_progress=False)
    job = pd.read_parquet(tmp_path / "scores").set_index(KEY).sort_index()
    assert len(job) == len(notebook) == 2100
    np.testing.assert_array_equal(job["score"].to_numpy(), notebook["score"].to_numpy())
    np.testing.assert_array_equal(job["is_anomaly"].to_numpy(), notebook["is_anomaly"].to_numpy())
    assert result.anomalies == int(notebook["is_anomaly"].sum()) == 84  # 4% of 2100
    assert result.threshold == pytest.approx(notebook.loc[notebook["is_anomaly"], "score"].min())


def test_run_job_without_output_or_detector_names_the_section(tmp_path) -> None:
    base = {
        "source": {"uri": str(tmp_path)},
        "search": {"space": ["hbos"]},
        "threshold": {"contamination": 0.05},
    }
    with pytest.raises(SpecError, match="no 'output' section"):
        run_job(JobSpec.from_dict(base), show_progress=False)
    with pytest.raises(SpecError, match="threshold.contamination must be a number"):
        JobSpec.from_dict({**base, "threshold": {"contamination": 0.7}})
    with pytest.raises(SpecError, match="threshold.contamination"):
        JobSpec.from_dict({**base, "threshold": {"contamination": "often"}})
    assert JobSpec.from_dict({**base, "threshold": {"contamination": "AUTO"}}).threshold == (
        JobSpec.from_dict({**base, "threshold": {"contamination": "auto"}}).threshold
    )

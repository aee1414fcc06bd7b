"""Every kind of source from a job spec: SQL tables and zarr arrays run through the job
runner on the cluster, with the missing-value policy applied."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

import adp
from adp.db import engine_for
from adp.jobs.spec import JobSpec

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _spec(tmp_path, source: dict) -> JobSpec:
    path = tmp_path / "job.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": source,
                "detector": {"name": "hbos"},
                "threshold": {"contamination": 0.05},
                "output": {"uri": str(tmp_path / "out")},
            }
        )
    )
    return JobSpec.from_yaml(path)


def test_sql_source_from_a_job_spec(client, tmp_path):
    url = f"sqlite:///{tmp_path / 'm.db'}"
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {"id": np.arange(600), "cpu": rng.normal(size=600), "mem": rng.normal(size=600)}
    )
    df.to_sql("metrics", engine_for(url), index=False)
    spec = _spec(
        tmp_path,
        {
            "uri": url,
            "options": {"table": "metrics", "index_col": "id", "npartitions": 3},
        },
    )
    adp.run_job(spec, client=client, show_progress=False)
    out = adp.read(str(tmp_path / "out")).compute()
    # the partitioning column is the index: it is carried into every scored row
    assert out.index.name == "id" and sorted(out.index) == list(range(600))
    assert 30 <= int(out["is_anomaly"].sum()) <= 40  # 5% of 600, exact up to ties


def test_zarr_source_from_a_job_spec(client, tmp_path):
    import xarray as xr

    rng = np.random.default_rng(1)
    ds = xr.Dataset(
        {"temp": (("time", "sensor"), rng.normal(size=(40, 6)))},
        coords={"time": pd.date_range("2026-11-01", periods=40, freq="h"), "sensor": np.arange(6)},
    )
    store = str(tmp_path / "s.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.chunk({"time": 10}).to_zarr(store, mode="w")
    spec = _spec(
        tmp_path,
        {"uri": store, "key": ["time", "sensor"], "options": {"window": 3, "chunks": {"time": 20}}},
    )
    adp.run_job(spec, client=client, show_progress=False)
    out = adp.read(str(tmp_path / "out")).compute()
    assert len(out) == (40 - 2) * 6
    assert {"temp", "temp_lag1"}.isdisjoint(out.columns)

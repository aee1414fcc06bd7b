"""``adp demo`` end to end and ``adp.connect`` (the notebooks run in tests/notebooks/)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

import adp
from adp.errors import ConfigError
from adp.jobs.demo_lake import generate


def test_demo_lake_has_known_injected_anomalies(tmp_path) -> None:
    lake = generate(tmp_path / "lake", sensors=4, days=2, seed=3)
    frame = pd.read_parquet(lake.path)
    assert len(frame) == lake.rows == 4 * 288 * 2
    assert lake.files == 2
    assert frame["is_injected"].sum() == lake.injected > 0
    assert set(frame.loc[frame["is_injected"], "anomaly_kind"]) <= {
        "spike",
        "drift",
        "stuck",
        "joint",
    }
    assert frame.duplicated(["sensor_id", "ts"]).sum() == 0
    again = pd.read_parquet(generate(tmp_path / "again", sensors=4, days=2, seed=3).path)
    pd.testing.assert_frame_equal(frame, again)  # same seed, same lake


@pytest.mark.slow
def test_adp_demo_prints_summary_and_writes_report(client, tmp_path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adp.cli",
            "demo",
            "--data",
            str(tmp_path / "lake"),
            "--out",
            str(tmp_path / "out"),
            "--sensors",
            "6",
            "--days",
            "3",
            "--scheduler",
            client.scheduler.address,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for word in (
        "rows",
        "5,184",
        "partitions",
        "workers",
        "anomalies flagged",
        "precision",
        "recall",
        "output",
        "wall time",
    ):
        assert word in proc.stdout, word
    scores = pd.read_parquet(tmp_path / "out" / "scores")
    assert len(scores) == 6 * 288 * 3
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("<svg") >= 2  # histogram and series
    assert "threshold" in page and "Top 25 anomalies" in page
    # context is on by default: each top sensor is drawn over its seasonal baseline
    assert "against their seasonal baseline" in page
    assert page.count("<svg") >= 3


def test_connect_to_an_address_rejects_local_options(client) -> None:
    with pytest.raises(ConfigError, match="n_workers"):
        adp.connect(client.scheduler.address, n_workers=3)


def test_connect_uses_the_configured_scheduler_address(client) -> None:
    import dask.config

    with (
        dask.config.set({"scheduler-address": client.scheduler.address}),
        adp.connect() as other,
    ):
        assert other.scheduler.address == client.scheduler.address

"""The ``search:`` job section, ``adp search JOB.yaml``, and the search benchmarks."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dask
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from adp.errors import SpecError


def _lake(tmp_path: Path, labelled) -> Path:
    lake = tmp_path / "lake"
    labelled.to_parquet(str(lake))
    return lake


def _spec(lake: Path, **search) -> dict:
    return {
        "name": "search-job",
        "source": {"uri": str(lake), "key": []},
        "threshold": {"contamination": 0.06},
        "search": {
            "space": {"pca": None, "isolation_forest": {"n_estimators": {"randint": [20, 40]}}},
            "label": "label",
            "max_trials": 4,
            "cv": 2,
            "random_state": 0,
            **search,
        },
    }


def test_run_search_job_prints_and_registers(client, labelled, tmp_path):
    from adp.jobs.search import run_search_job
    from adp.jobs.spec import JobSpec
    from adp.models.api import ModelRegistry

    lake = _lake(tmp_path, labelled)
    spec = JobSpec.from_dict(_spec(lake, register={"name": "searched"}))
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    out = io.StringIO()
    result = run_search_job(spec, client, console=Console(file=out, width=200), registry=registry)

    printed = out.getvalue()
    assert "labelled search, roc_auc" in printed and "registered searched@1" in printed
    assert result.extra["registered"] == "searched@1"
    assert len(result.leaderboard) == 4 and result.features == [f"f{i}" for i in range(5)]
    assert result.best_detector is not None and result.best_detector.contamination == 0.06
    version = registry.info("searched", 1)
    assert version.source == str(lake) and version.fingerprint.startswith("files-sha256:")
    assert version.metrics["metric"] == "roc_auc" and version.metrics["cv"] == 2
    assert version.metrics["score"] == pytest.approx(result.best_score)
    assert version.metadata == {"job": "search-job", "missing": "fail"}
    assert registry.get("searched").params == result.best_params

    no_search = JobSpec.from_dict(
        {
            **_spec(lake),
            "search": None,
            "detector": {"name": "pca"},
            "output": {"uri": str(tmp_path / "out")},
        }
    )
    with pytest.raises(SpecError, match="no 'search' section"):
        run_search_job(no_search, client)


def test_search_job_fits_the_missing_policy_into_the_registered_winner(client, labelled, tmp_path):
    """``source.missing: impute_median``: the trials run on imputed rows, and the registered
    winner carries the policy and its fit-time medians (no medians in the metadata)."""
    import dask.dataframe as dd
    import numpy as np

    from adp.jobs.search import run_search_job
    from adp.jobs.spec import JobSpec
    from adp.models.api import ModelRegistry

    frame = labelled.compute()
    frame.loc[frame.index[::40], "f0"] = np.nan
    frame.loc[frame.index[7::60], "f3"] = np.nan
    lake = tmp_path / "lake"
    dd.from_pandas(frame, npartitions=3).to_parquet(str(lake))
    data = _spec(lake, register={"name": "imputed"})
    data["source"]["missing"] = "impute_median"
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    result = run_search_job(
        JobSpec.from_dict(data), client, console=Console(file=io.StringIO()), registry=registry
    )
    assert (result.leaderboard["status"] == "ok").all(), result.leaderboard["error"].tolist()
    winner = registry.get("imputed")
    assert winner.missing_ == "impute_median"
    features = [f"f{i}" for i in range(5)]
    assert sorted(winner.medians_) == features
    for name in features:  # dask's one-pass approximate median
        assert winner.medians_[name] == pytest.approx(frame[name].median(), abs=0.2)
    assert registry.info("imputed", 1).metadata == {"job": "search-job", "missing": "impute_median"}
    scores = winner.decision_function(dd.from_pandas(frame, npartitions=2)).compute()
    assert len(scores) == len(frame) and np.isfinite(scores).all()  # NaN rows imputed


@pytest.mark.slow
def test_adp_search_command(client, labelled, tmp_path):
    # A separate process, as a user runs it, against the session's scheduler.
    import os
    import subprocess
    import sys

    lake = _lake(tmp_path, labelled)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_spec(lake, register={"name": "from-cli"})))
    env = {
        **os.environ,
        "DASK_ADP__MODELS__URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "DASK_ADP__MODELS__STORE": str(tmp_path / "store"),
    }
    command = [sys.executable, "-m", "adp.cli", "search"]
    address = client.scheduler.address
    done = subprocess.run(
        [*command, str(job), "--scheduler", address, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 4 and rows[0]["status"] == "ok"
    with dask.config.set(
        {
            "adp.models.url": env["DASK_ADP__MODELS__URL"],
            "adp.models.store": str(tmp_path / "store"),
        }
    ):
        import adp

        assert [v.ref for v in adp.models.list()] == ["from-cli@1"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec(lake, metric="accuracy")))
    failed = subprocess.run(
        [*command, str(bad), "--scheduler", address],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert failed.returncode == 1 and "not a labelled metric" in failed.stderr


def test_bench_search_runs_the_same_trials_both_ways(client):
    from adp.bench.model_search import bench_search

    space = {"isolation_forest": {"n_estimators": {"randint": [20, 30]}}}
    result = bench_search(
        n_trials=4,
        client=client,
        rows=2000,
        features=4,
        cv=2,
        engines=("futures",),
        space=space,
        plain_processes=False,
    )
    assert result["trials"] == 4 and result["workers"] == 2
    assert result["scores_match"] is True
    assert result["sequential_seconds"] > 0 and result["parallel_seconds"] > 0
    assert result["speedup"] == pytest.approx(
        result["sequential_seconds"] / result["parallel_seconds"]
    )


def test_selection_table_on_an_odds_dataset(client, odds_dir):
    from adp.bench.model_search import selection_table

    table = selection_table(
        odds_dir,
        ["breastw"],
        space=["isolation_forest", "pca", "knn", "ecod"],
        max_trials=4,
        repeats=1,
        client=client,
    )
    assert table["dataset"].tolist() == ["breastw", "all"]
    row = table.iloc[0]
    for column in ("pick_auc", "median_auc", "iforest_auc", "best_auc"):
        assert 0.5 < row[column] <= 1.0, column
    assert row["pick_auc"] <= row["best_auc"]
    assert row["beats_median"] in ("0/1", "1/1") and row["beats_iforest"] in ("0/1", "1/1")
    assert isinstance(table, pd.DataFrame) and 0 <= row["pick_percentile"] <= 100


def test_adp_bench_selection_command(client, odds_dir):
    from adp.bench.model_search import selection

    args = ["--odds", str(odds_dir), "--dataset", "breastw", "--trials", "2", "--repeats", "1"]
    result = CliRunner().invoke(
        selection, [*args, "--scheduler", client.scheduler.address, "--json"]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["dataset"] for r in records] == ["breastw", "all"]
    assert records[0]["repeats"] == 1 and records[0]["beats_iforest"] in ("0/1", "1/1")

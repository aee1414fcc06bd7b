"""A job spec with a context section, end to end on the shared cluster: the demo's spec
(context on by default) on a small demo lake, and the pre-flight naming a bad column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from distributed import Client

from adp.errors import DataError
from adp.jobs.demo import DEMO_CONTEXT, demo_spec
from adp.jobs.demo_lake import generate
from adp.jobs.preflight import preflight
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("context-lake") / "lake"
    generate(path, sensors=8, days=3)
    return path


def test_the_demo_spec_has_context_on_by_default(tmp_path: Path) -> None:
    assert demo_spec(tmp_path, tmp_path).context is not None
    assert demo_spec(tmp_path, tmp_path, context=False).context is None
    on = demo_spec(tmp_path, tmp_path)
    assert on.to_dict()["context"]["season"] == DEMO_CONTEXT["season"]


@pytest.mark.slow
def test_context_lifts_the_demo_at_the_same_flag_rate(
    client: Client, lake: Path, tmp_path: Path
) -> None:
    results = {}
    for context in (False, True):
        spec = demo_spec(lake, tmp_path / f"out-{context}", context=context)
        results[context] = run_job(spec, client=client, show_progress=False, check=False)
    off, on = results[False], results[True]
    assert on.rows == off.rows == 8 * 3 * 288
    assert on.anomalies == off.anomalies  # the same global 3% flag rate
    assert on.evaluation is not None and off.evaluation is not None
    assert on.evaluation.precision > off.evaluation.precision + 0.1
    assert on.evaluation.recall > off.evaluation.recall + 0.1
    assert on.evaluation.recall_by_kind()["joint"] > off.evaluation.recall_by_kind()["joint"]
    assert "pressure.diff_from_season" in on.features

    scored = pd.read_parquet(tmp_path / "out-True" / "scores")
    assert len(scored) == on.rows
    assert not scored.duplicated(["sensor_id", "ts"]).any()  # every row exactly once
    named = scored.loc[scored["is_anomaly"], "top_features"].explode()
    assert named.str.contains(r"\.(?:diff_from_season|roll_\w+_12|diff)$").all()


def test_the_preflight_names_a_context_column_the_source_lacks(lake: Path, tmp_path: Path) -> None:
    data = demo_spec(lake, tmp_path).to_dict()
    data["context"]["by"] = "sensor"
    with pytest.raises(DataError, match="context.by names \\['sensor'\\], not in the source"):
        preflight(JobSpec.from_dict(data))

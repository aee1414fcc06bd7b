"""A job spec whose context encodes a categorical and a text column, end to end: the
pre-flight accepts the string columns, the job scores every row, and the flags are
explained by the encoded features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from adp.errors import DataError
from adp.jobs.preflight import check_columns
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec


def _table(path: Path, rows: int = 3000, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    kind = rng.choice(["pump", "fan", "valve"], size=rows)
    level = pd.Series(kind).map({"pump": 10.0, "fan": 20.0, "valve": 30.0}).to_numpy()
    x = level + rng.normal(0, 1.0, rows)
    anomalous = np.zeros(rows, dtype=bool)
    anomalous[rng.choice(rows, 30, replace=False)] = True
    # an anomaly reads another kind's level: ordinary for the table, not for its kind
    x[anomalous] = np.where(kind[anomalous] == "pump", 30.0, 10.0) + rng.normal(0, 1, 30)
    note = np.where(anomalous, "grinding noise smoke", "routine check ok")
    frame = pd.DataFrame(
        {"row": np.arange(rows), "kind": kind, "x": x, "note": note, "label": anomalous}
    )
    path.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(len(frame)), 3)):
        frame.iloc[rows].to_parquet(path / f"part-{i}.parquet", index=False)
    return path, frame


def _spec(lake: Path, out: Path) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "encoded",
            "source": {
                "uri": str(lake),
                "format": "parquet",
                "features": ["x", "kind"],
                "key": ["row"],
                "exclude": ["label"],
            },
            "context": {"categorical": ["kind"], "text": {"columns": ["note"]}},
            "detector": {"name": "iforest", "params": {"random_state": 0}},
            "threshold": {"contamination": 0.01},
            "explain": {"top_k": 2},
            "output": {"uri": str(out)},
        }
    )


@pytest.mark.slow
def test_a_job_scores_a_table_with_strings(client: Client, tmp_path: Path) -> None:
    lake, frame = _table(tmp_path / "lake")
    result = run_job(_spec(lake, tmp_path / "out"), client=client, show_progress=False)
    assert result.rows == len(frame)
    assert "kind.freq" in result.features and any(f.startswith("note.svd") for f in result.features)
    scored = pd.read_parquet(tmp_path / "out").merge(frame, on="row")
    assert len(scored) == len(frame)
    flagged = scored[scored["is_anomaly"]]
    assert flagged["label"].mean() > 0.8  # the encoded columns find the planted rows
    named = flagged["top_features"].explode()
    assert named.str.match(r"^(x|kind[.=].*|note\.svd.*)$").all()


def test_the_preflight_accepts_encoded_string_features(tmp_path: Path) -> None:
    spec = _spec(tmp_path / "lake", tmp_path / "out")
    columns = {"row": "int64", "kind": "string", "x": "double", "note": "string", "label": "bool"}
    check_columns(spec, list(columns))  # names only: the types are not known
    data = spec.to_dict()
    data["context"]["categorical"] = ["colour"]
    with pytest.raises(DataError, match=r"context.categorical/text names \['colour'\]"):
        check_columns(JobSpec.from_dict(data), list(columns))

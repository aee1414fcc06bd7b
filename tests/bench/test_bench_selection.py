"""``adp bench selection``: build a performance table, then leave one dataset out.

Small and fast: three synthetic labelled datasets of 500 rows, one seed. The full benchmark
over the shared ODDS datasets is a command (``adp bench selection``), not a test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from adp.errors import DataError
from adp.tuning.perftable import CANDIDATES, DEFAULT_ID, load_table

ROWS = 500


def _dataset(kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (rng.random(ROWS) < 0.06).astype(np.int64)
    if kind == "blobs":
        X = rng.normal(size=(ROWS, 4))
        X[y == 1] += 3.0
    elif kind == "discrete":
        X = rng.integers(0, 6, size=(ROWS, 5)).astype(float)
        X[y == 1, 0] = 9.0
    else:  # correlated features; anomalies break the correlation
        base = rng.normal(size=(ROWS, 1))
        X = np.hstack([base + rng.normal(scale=0.1, size=(ROWS, 1)) for _ in range(3)])
        X[y == 1, 1] = -X[y == 1, 1]
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame["label"] = y
    return frame


@pytest.fixture(scope="module")
def built(client, tmp_path_factory) -> tuple[Path, Path, dict]:
    """Run ``adp bench selection --build`` once on the three datasets."""
    from adp.bench.selection import selection

    folder = tmp_path_factory.mktemp("labelled")
    for seed, kind in enumerate(("blobs", "corr", "discrete")):
        _dataset(kind, seed).to_parquet(folder / f"{kind}.parquet")
    out = folder / "table.json"
    args = ["--odds", str(folder), "--build", "--out", str(out), "--repeats", "1"]
    args += ["--sample-rows", str(ROWS), "--scheduler", client.scheduler.address, "--json"]
    result = CliRunner().invoke(selection, args)
    assert result.exit_code == 0, result.output
    return folder, out, json.loads(result.output)


@pytest.mark.slow
def test_build_records_the_table_and_its_provenance(built):
    folder, out, _ = built
    table = load_table(out)
    assert table.datasets == ["blobs", "corr", "discrete"]
    assert table.candidates == [c[0] for c in CANDIDATES]
    assert [(r.dataset, r.seed) for r in table.runs] == [(d, 0) for d in table.datasets]
    prov = table.provenance
    for entry in prov["datasets"]:
        data = (folder / f"{entry['name']}.parquet").read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["rows"] == ROWS
    assert prov["seeds"] == [0] and prov["sample_rows"] == ROWS
    assert [c["id"] for c in prov["candidates"]] == table.candidates
    assert dt.datetime.strptime(prov["created"], "%Y-%m-%dT%H:%M:%SZ")
    auc = table.matrix()
    assert np.nanmin(auc) >= 0.0 and np.nanmax(auc) <= 1.0
    # Anomalies shifted by 3 standard deviations: the default forest finds them.
    assert auc[0, table.candidates.index(DEFAULT_ID)] > 0.9


@pytest.mark.slow
def test_leave_one_out_reports_the_picks_figures(built):
    _, out, report = built
    table = load_table(out)
    rows = {r["dataset"]: r for r in report["datasets"]}
    assert list(rows) == ["blobs", "corr", "discrete", "mean"]
    for run in table.runs:
        row = rows[run.dataset]
        pick = table.candidates.index(row["picks"])
        assert row["pick_auc"] == pytest.approx(run.roc_auc[pick], abs=1e-6)
        assert row["pick_ap"] == pytest.approx(run.average_precision[pick], abs=1e-6)
        assert row["default_auc"] == pytest.approx(run.roc_auc[0], abs=1e-6)
        assert row["best_auc"] == pytest.approx(np.nanmax(run.roc_auc), abs=1e-6)
        assert row["median_auc"] == pytest.approx(np.nanmedian(run.roc_auc), abs=1e-6)
        assert row["best_auc"] >= row["pick_auc"] and row["best_auc"] >= row["median_auc"]
        assert row["selection_seconds"] > 0 and row["default_fit_seconds"] > 0
        assert row["cost_ratio"] == pytest.approx(
            row["selection_seconds"] / row["default_fit_seconds"]
        )
        assert row["fallbacks"] in ("0/1", "1/1")
        if row["fallbacks"] == "1/1":
            assert row["picks"] == DEFAULT_ID
    verdict = report["verdict"]
    deltas = [rows[d]["pick_auc"] - rows[d]["default_auc"] for d in table.datasets]
    assert verdict["wins"] + verdict["ties"] + verdict["losses"] == verdict["datasets"] == 3
    assert verdict["worst_delta_auc"] == pytest.approx(min(deltas))
    assert verdict["mean_delta_auc"] == pytest.approx(np.mean(deltas))


@pytest.mark.slow
def test_leave_one_out_refuses_a_changed_dataset(built, client, tmp_path):
    from adp.bench.selection import leave_one_out

    folder, out, _ = built
    changed = tmp_path / "blobs.parquet"
    _dataset("blobs", 99).to_parquet(changed)
    with pytest.raises(DataError, match="not the file the table was built from"):
        leave_one_out(load_table(out), client, {"blobs": changed})


def test_the_shipped_table_was_built_from_the_shared_datasets(odds_dir):
    table = load_table()
    recorded = {d["name"]: d["sha256"] for d in table.provenance["datasets"]}
    manifest = pd.read_csv(odds_dir / "MANIFEST.csv").set_index("dataset")["parquet_sha256"]
    assert recorded == manifest.to_dict()
    assert len(table.runs) == len(recorded) * len(table.provenance["seeds"])
    assert table.provenance["seeds"] == [0, 1, 2]

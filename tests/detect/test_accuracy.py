"""Accuracy parity on the real ODDS datasets: ADP (partition-parallel, 2 workers) against
single-process PyOD under the same protocol, and the published figures."""

from __future__ import annotations

import json

import dask.config
import pytest
from click.testing import CliRunner
from distributed import Client

from adp.bench.accuracy import (
    DEFAULT_DETECTORS,
    LEGEND,
    accuracy,
    bench_accuracy,
    load_dataset,
)

# A fast subset; `adp bench accuracy` runs all datasets and DEFAULT_DETECTORS.
SUBSET = ["isolation_forest", "ecod", "copod", "knn", "pca"]


@pytest.mark.slow
def test_adp_matches_single_process_pyod_on_real_data(client: Client, odds_dir) -> None:
    frame = bench_accuracy(["cardio"], SUBSET, client=client, odds_dir=odds_dir)
    assert len(frame) == len(SUBSET) and set(SUBSET) <= set(DEFAULT_DETECTORS)
    assert frame["parity"].all(), frame[~frame["parity"]].to_string()
    deterministic = frame[frame["detector"] != "isolation_forest"]
    assert (deterministic["abs_diff"] <= 1e-6).all()
    forest = frame.set_index("detector").loc["isolation_forest"]
    assert forest["abs_diff"] <= 0.015
    # like with like: for KNN and LOF, PyOD's training scores leave each row out of its
    # own neighbourhood, scoring the rows as new rows (what ADP does) does not
    knn = frame.set_index("detector").loc["knn"]
    assert knn["pyod_train_auc"] != pytest.approx(knn["pyod_auc"], abs=1e-6)
    # every gap above 0.015 to a published figure carries a reason from the legend
    for _, row in frame.iterrows():
        for source, code in (("adbench-2022", "A"), ("pyod-benchmark-2024", "P")):
            gap = abs(row["adp_auc"] - row[source]) > 0.015  # NaN (no figure): no gap
            assert (f"{code} (" in row["note"]) == gap, row
        for code in row["note"].replace(",", " ").split():
            assert code in LEGEND or code.startswith(("(+", "(-"))


def test_accuracy_command_prints_json(client: Client, odds_dir) -> None:
    X, y = load_dataset(odds_dir, "breastw")
    assert X.shape == (683, 9) and y.sum() == 239
    with dask.config.set({"scheduler-address": client.scheduler.address}):
        result = CliRunner().invoke(
            accuracy,
            [
                "--datasets",
                "breastw",
                "--detectors",
                "copod,ecod",
                "--json",
                "--odds-dir",
                str(odds_dir),
            ],
        )
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    assert [r["detector"] for r in records] == ["copod", "ecod"]
    assert all(r["parity"] for r in records)
    assert records[0]["adbench-2022"] == pytest.approx(0.9968)

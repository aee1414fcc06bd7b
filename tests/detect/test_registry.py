"""The detector catalogue: names, documentation, parameters, optional extras, `adp detectors`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import adp
from adp.detect.catalog import EXCLUDED
from adp.detect.cli import detectors
from adp.detect.registry import DetectorInfo, all_detectors, available, detector_info
from adp.errors import DetectorError

SKLEARN = [
    "sklearn_isolation_forest",
    "sklearn_lof",
    "sklearn_one_class_svm",
    "sklearn_sgd_one_class_svm",
    "sklearn_elliptic_envelope",
]
ISSUE_LIST = [
    "isolation_forest", "ecod", "copod", "hbos", "lof", "knn", "one_class_svm", "pca", "mcd",
    "cblof", "loda", "inne", "kde", "gmm", "sod", "sampling", "qmcd", "kpca", "abod", "cof",
    "rod", "feature_bagging", "lunar", "autoencoder",
]  # fmt: skip


def test_catalogue_covers_pyod_sklearn_and_deep() -> None:
    names = available()
    pyod_backed = [
        i for i in all_detectors() if i.estimator.startswith(("pyod.", "adp.detect.neighbors"))
    ]
    assert len(pyod_backed) >= 25
    assert set(SKLEARN) <= set(names)
    # lmdd is the one PyOD detector of the issue's list left out, with a reason
    assert set(ISSUE_LIST) <= set(names)
    assert "lmdd" in EXCLUDED and "lmdd" not in names
    assert detector_info("sklearn_lof").fixed_params == {"novelty": True}


@pytest.mark.parametrize("info", all_detectors(), ids=lambda i: i.name)
def test_every_entry_is_documented(info: DetectorInfo) -> None:
    assert info.name == info.name.lower()
    assert info.summary and info.fit_cost.startswith(("O(", "t x"))
    assert info.score_cost
    assert isinstance(info.deterministic, bool)
    assert set(info.strategies) <= {"sample", "distributed", "bagging"}
    if info.is_available():
        assert "contamination" in info.valid_params()
        assert not set(info.fixed_params) & set(info.valid_params())


def test_unknown_names_and_parameters_list_the_valid_ones() -> None:
    with pytest.raises(DetectorError, match="valid names: .*sklearn_lof"):
        adp.create_detector("no_such_detector")
    with pytest.raises(DetectorError, match="valid parameters: .*n_neighbors"):
        adp.create_detector("cof", n_neighbours=3)
    with pytest.raises(DetectorError, match="novelty"):
        adp.create_detector("sklearn_lof", novelty=False)  # fixed, not settable
    assert adp.create_detector("sklearn_iforest").name == "sklearn_isolation_forest"


def test_an_unavailable_optional_detector_names_its_extra() -> None:
    info = DetectorInfo(
        "ghost",
        "adp_no_such_module.models:Ghost",
        "A detector whose package is not installed.",
        fit_cost="O(n)",
        score_cost="O(m)",
        deterministic=True,
        requires=("adp_no_such_module",),
        extra="deep",
    )
    assert not info.is_available()
    assert info.install_hint() == "pip install 'adp[deep]'"
    with pytest.raises(DetectorError, match=r"not available: pip install 'adp\[deep\]'"):
        info.estimator_class()


def test_detectors_command_lists_every_detector() -> None:
    runner = CliRunner()
    result = runner.invoke(detectors, ["--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["name"] for r in rows] == available()
    forest = next(r for r in rows if r["name"] == "isolation_forest")
    assert forest["aliases"] == ["iforest"] and forest["deterministic"] is False
    assert "distributed" in forest["strategies"]
    for row in rows:
        assert row["available"] or row["install"].startswith("pip install 'adp[")

    table = runner.invoke(detectors, [])
    assert table.exit_code == 0
    assert "sklearn_sgd_one_class_svm" in table.output and "FIT COST" in table.output
    excluded = runner.invoke(detectors, ["--excluded"])
    assert "lmdd:" in excluded.output

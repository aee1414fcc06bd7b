"""``adp bench kernels`` and ``adp bench profile`` on small inputs: every compiled kernel
gives its reference's scores, and the profile names the functions that take the time."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from adp.bench.hotspots import profile
from adp.bench.kernels import kernels


@pytest.mark.slow
def test_kernels_report_equal_scores_and_both_timings() -> None:
    result = CliRunner().invoke(
        kernels, ["--rows", "20000", "--features", "6", "--repeats", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for name in ("isolation_forest", "hbos", "ecod", "copod", "knn", "lof"):
        entry = report[name]
        assert entry["max_abs_diff"] <= 1e-9, name
        assert entry["speedup"] > 0, name
    for name in ("knn", "lof"):  # equal to PyOD with an exact search, bit for bit
        assert report[name]["exact_max_abs_diff"] == 0, name
    assert report["threshold"]["passes_seconds"] > 0


def test_profile_names_the_compiled_kernel_of_a_compiled_detector() -> None:
    result = CliRunner().invoke(
        profile,
        ["--detector", "hbos", "--detector", "pca", "--rows", "5000", "--fit-rows", "2000",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    hbos, pca = json.loads(result.output)
    assert hbos["scorer"] == "HbosScorer"
    assert "_hbos_scores" in hbos["top"][0]["function"]
    assert pca["seconds_per_million_rows"] > 0
    assert 0 < sum(item["self_share"] for item in pca["top"]) <= 1.001

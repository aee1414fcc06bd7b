"""Fixtures for the search tests: labelled synthetic data and a detector whose optional
dependency is missing (whatever this installation has)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture
def missing_extra_detector(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A detector registered (in this process only) with a dependency that cannot import,
    like ``autoencoder`` without torch."""
    from adp.detect import registry

    name = "needs_missing_extra"
    info = registry.DetectorInfo(
        name,
        "pyod.models.iforest:IForest",
        "A detector whose optional dependency is not installed.",
        fit_cost="-",
        score_cost="-",
        deterministic=True,
        extra="deep",
        requires=("adp_tests_module_that_does_not_exist",),
    )
    monkeypatch.setitem(registry._DETECTORS, name, info)
    yield name

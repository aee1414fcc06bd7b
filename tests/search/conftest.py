"""Fixtures for the search tests: labelled synthetic data and a detector whose optional
dependency is missing (whatever this installation has)."""

from __future__ import annotations

from collections.abc import Iterator

import dask.dataframe as dd
import numpy as np
import pandas as pd
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


def labelled_frame(rows: int = 3000, features: int = 5, seed: int = 0) -> pd.DataFrame:
    """Gaussian rows with 6% anomalies shifted away from the bulk; ``label`` is 1 for them."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    y = (rng.random(rows) < 0.06).astype(np.int64)
    X[y == 1] += rng.normal(3.0, 0.5, size=(int(y.sum()), features))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    return frame


@pytest.fixture(scope="session")
def labelled() -> dd.DataFrame:
    return dd.from_pandas(labelled_frame(), npartitions=4)

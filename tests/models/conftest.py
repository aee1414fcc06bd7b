"""Fixtures for the model registry tests: a fitted detector, SQLite and PostgreSQL registries."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def small_ddf() -> dd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.normal(size=(1200, 4)), columns=["a", "b", "c", "d"])
    frame.iloc[::50] += 6.0
    return dd.from_pandas(frame, npartitions=3)


@pytest.fixture(scope="session")
def fitted(client: Any, small_ddf: dd.DataFrame) -> Any:
    import adp

    return adp.create_detector("iforest", n_estimators=40, random_state=0).fit(
        small_ddf, random_state=0
    )


@pytest.fixture(scope="session")
def pg_available(pg_url: str) -> str:
    """The machine's PostgreSQL (see ``pg_url`` in tests/conftest.py)."""
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh registry on SQLite or PostgreSQL (unique table prefix, dropped after)."""
    from adp.models.api import ModelRegistry

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'models.db'}"
    else:
        url = request.getfixturevalue("pg_available")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    reg = ModelRegistry(url, str(tmp_path / "store"), table_prefix=prefix)
    try:
        yield reg
    finally:
        reg.catalog.drop()

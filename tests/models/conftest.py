"""Fixtures for the model registry tests: a fitted detector, SQLite and PostgreSQL registries."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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
def pg_available() -> str:
    """The machine's PostgreSQL; skipped when unreachable, a failure when CI=true."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # any failure to connect
        reason = f"PostgreSQL is not reachable at {PG_URL}: {exc}"
        if IN_CI:
            pytest.fail(f"{reason} (required when CI=true)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return PG_URL


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

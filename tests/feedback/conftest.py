"""Fixtures for the feedback tests: label stores on SQLite and PostgreSQL, an audit log of
their own, a keyed dataset with a fitted ensemble, and a registry holding it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[Any]:
    """An audit log in a scratch folder (its records are the test's alone)."""
    from adp.observe.audit import AuditLog

    log = AuditLog(f"sqlite:///{tmp_path / 'audit.db'}", state_dir=tmp_path)
    try:
        yield log
    finally:
        log.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, audit_log: Any) -> Iterator[Any]:
    """A fresh label store on SQLite or PostgreSQL (unique table prefix, dropped after)."""
    from adp.feedback.labels import LabelStore

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'labels.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    labels = LabelStore(url, table_prefix=f"t{uuid.uuid4().hex[:10]}_", audit_log=audit_log)
    try:
        yield labels
    finally:
        labels.drop()


@pytest.fixture
def sqlite_store(tmp_path: Path, audit_log: Any) -> Iterator[Any]:
    """A label store on SQLite alone (for tests about what is learned, not where it is kept)."""
    from adp.feedback.labels import LabelStore

    labels = LabelStore(f"sqlite:///{tmp_path / 'labels.db'}", audit_log=audit_log)
    try:
        yield labels
    finally:
        labels.close()


def keyed_frame(rows: int = 2000, seed: int = 3) -> pd.DataFrame:
    """Gaussian rows keyed by ``id``; ~5% anomalies (``label`` 1) shifted in f0 and f1."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["f0", "f1", "f2", "f3"])
    label = (rng.random(rows) < 0.05).astype(np.int64)
    frame.loc[label == 1, ["f0", "f1"]] += 3.5
    frame.insert(0, "id", np.arange(rows, dtype=np.int64) * 7 + 11)  # not the row number
    frame["label"] = label
    return frame


@pytest.fixture(scope="session")
def keyed() -> pd.DataFrame:
    return keyed_frame()


@pytest.fixture(scope="session")
def keyed_ddf(keyed: pd.DataFrame) -> dd.DataFrame:
    return dd.from_pandas(keyed.drop(columns="label"), npartitions=4)


@pytest.fixture(scope="session")
def ensemble(client: Any, keyed_ddf: dd.DataFrame) -> Any:
    """A fitted ensemble of HBOS and an isolation forest, contamination 0.05."""
    import adp

    return adp.create_detector(
        "ensemble",
        detectors=["hbos", {"name": "iforest", "params": {"n_estimators": 50}}],
        contamination=0.05,
        random_state=0,
    ).fit(keyed_ddf, key=["id"], random_state=0)


@pytest.fixture(scope="session")
def fitted_hbos(client: Any, keyed_ddf: dd.DataFrame) -> Any:
    """A fitted single detector (HBOS), for what needs one that is not an ensemble."""
    import adp

    return adp.create_detector("hbos").fit(keyed_ddf, key=["id"])


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Any]:
    """A registry on SQLite in a scratch folder."""
    from adp.models.api import ModelRegistry

    reg = ModelRegistry(f"sqlite:///{tmp_path / 'models.db'}", str(tmp_path / "store"))
    try:
        yield reg
    finally:
        reg.close()

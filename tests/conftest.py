"""Shared fixtures: one real LocalCluster (worker processes) per test session, the shared
benchmark datasets, moto's S3 server on 127.0.0.1 (reached through s3fs over HTTP, never a
mock of s3fs), SQLite files, the machine's PostgreSQL and a small labelled frame."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# ADP's local state (audit log, model registry) goes to a scratch folder for the whole run,
# in this process, in the cluster's workers and in every `adp` subprocess (they inherit
# the environment), never into the repository.
# No test may ask a cloud instance-metadata service for credentials: botocore would try
# 169.254.169.254 when storage_options carry none. Set before any worker process starts.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ.setdefault("DASK_ADP__STATE_DIR", tempfile.mkdtemp(prefix="adp-test-state-"))

import dask.config  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from ci_support import need_in_ci  # noqa: E402
from distributed import Client  # noqa: E402

dask.config.refresh()

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ODDS = REPO.parent / "shared" / "data" / "odds"


@pytest.fixture(scope="session")
def client() -> Iterator[Client]:
    """A LocalCluster with 2 worker processes (1 thread each), shared by the session.

    Tests that need their own cluster (killing workers, other plugins) start one.
    """
    import adp

    with adp.connect(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="session")
def odds_dir() -> Path:
    """``../shared/data/odds``: skipped on a user's clone without it, a failure in CI."""
    if not (ODDS / "MANIFEST.csv").exists():
        need_in_ci(f"the shared benchmark datasets are not at {ODDS}")
    return ODDS


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The machine's PostgreSQL; skipped when unreachable, a failure when CI=true."""
    import sqlalchemy as sa

    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:  # any failure to connect
        need_in_ci(f"PostgreSQL is not reachable at {PG_URL}: {exc}")
    finally:
        engine.dispose()
    return PG_URL


def start_moto_s3() -> tuple[Any, Any]:
    """Start moto's S3 server on 127.0.0.1, on a free port, with werkzeug's log silenced.

    The reusable helper behind the ``s3`` fixture (and ``adp bench io``): returns
    ``(server, info)`` where ``info`` has ``endpoint``, ``storage_options``, ``fs()``,
    ``bucket()`` and ``options(**extra)``; call ``server.stop()`` when done.
    """
    from adp.bench.reading import start_moto

    return start_moto()


@pytest.fixture(scope="session")
def s3() -> Iterator[Any]:
    """moto's S3 server for the whole session; tests make their own bucket with ``bucket()``."""
    server, info = start_moto_s3()
    try:
        yield info
    finally:
        server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Any) -> str:
    """A fresh SQLite database file."""
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture
def table_name() -> Iterator[str]:
    """A unique table name; the tables it prefixes (and staging tables) are dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    import sqlalchemy as sa

    from adp.db import _ENGINES

    for engine in list(_ENGINES.values()):
        try:
            with engine.begin() as conn:
                for table in sa.inspect(conn).get_table_names():
                    if table.startswith((name, "_adp_stage_")):
                        sa.Table(table, sa.MetaData()).drop(conn, checkfirst=True)
        except Exception:  # a database that is gone needs no cleaning
            pass


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

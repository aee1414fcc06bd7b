"""Shared fixtures: one real LocalCluster (worker processes) per test session, and the
shared benchmark datasets."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# ADP's local state (audit log, model registry) goes to a scratch folder for the whole run,
# in this process, in the cluster's workers and in every `adp` subprocess (they inherit
# the environment), never into the repository.
os.environ.setdefault("DASK_ADP__STATE_DIR", tempfile.mkdtemp(prefix="adp-test-state-"))

import dask.config  # noqa: E402
import pytest  # noqa: E402
from distributed import Client  # noqa: E402

dask.config.refresh()

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ODDS = REPO.parent / "shared" / "data" / "odds"
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_in_ci(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail when running in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)


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

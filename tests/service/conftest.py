"""Fixtures for the service tests (helpers in service_site.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.config
import pytest
from service_site import Site, start_site


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory of the test's own (service database, audit trail, secret)."""
    state = tmp_path / "state"
    with dask.config.set({"adp.state-dir": str(state)}):
        yield state


@pytest.fixture
def site(tmp_path: Path, state_dir: Path, client: Any) -> Iterator[Site]:
    """A service on the session's cluster with a 4-partition lake; closed after the test."""
    started = start_site(tmp_path, client)
    try:
        yield started
    finally:
        started.service.close()

"""What the tests need from the machine they run on: under ``CI=true`` a missing service or
tool is a failure, on a developer's machine a skip. (A module of its own so that any test
can import it: every conftest module is named ``conftest``.)"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def need_in_ci(reason: str) -> None:
    """Skip with ``reason`` on a developer's machine; fail when running in CI."""
    if IN_CI:
        pytest.fail(f"{reason} (required when CI=true)")
    pytest.skip(reason)

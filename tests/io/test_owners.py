"""Staging owners' timings come from the dask config when they are used:
``adp.io.heartbeat-seconds`` (how often a running job's staging beats) and
``adp.io.stale-seconds`` (when another host's silent owner counts as gone), for the next
job's check and for ``adp clean`` alike."""

from __future__ import annotations

import os
import time
from pathlib import Path

import dask.config
import pytest
from click.testing import CliRunner

from adp.io.owners import (
    HEARTBEAT,
    HEARTBEAT_SECONDS,
    OWNER,
    STALE_SECONDS,
    Heartbeat,
    Owner,
    abandoned,
    fs_for,
    heartbeat_seconds,
    owner_alive,
    stale_seconds,
)
from adp.io.staging import STAGING_MARK


@pytest.fixture(autouse=True)
def state(tmp_path: Path):
    """A state directory of the test's own (staging register, audit trail)."""
    with dask.config.set({"adp.state-dir": str(tmp_path / "state")}):
        yield tmp_path / "state"


def _silent_owner_elsewhere(root: Path, age: float) -> None:
    """Make ``root`` a staging folder owned by a job on another host whose last heartbeat
    is ``age`` seconds old."""
    root.mkdir(parents=True)
    owner = Owner("another-host", 1, 0.0, "2024-01-01T00:00:00+00:00", str(root))
    (root / OWNER).write_text(owner.to_json())
    (root / HEARTBEAT).write_text("0")
    then = time.time() - age
    os.utime(root / HEARTBEAT, (then, then))


def test_the_defaults_are_the_documented_constants() -> None:
    assert heartbeat_seconds() == HEARTBEAT_SECONDS == 10.0
    assert stale_seconds() == STALE_SECONDS == 120.0


def test_stale_seconds_is_read_at_use_time(tmp_path: Path) -> None:
    elsewhere = Owner("another-host", 1, 0.0, "2024-01-01T00:00:00+00:00", "x")
    assert owner_alive(elsewhere, heartbeat_age=50.0)
    root = tmp_path / "staging"
    _silent_owner_elsewhere(root, age=50)
    fs, path = fs_for(str(root))
    assert not abandoned(fs, path)
    with dask.config.set({"adp.io.stale-seconds": 30}):
        assert stale_seconds() == 30.0
        assert not owner_alive(elsewhere, heartbeat_age=50.0)
        assert abandoned(fs, path)
    assert owner_alive(elsewhere, heartbeat_age=50.0, stale=60.0)  # explicit wins


def test_heartbeat_seconds_is_read_when_a_heartbeat_starts(tmp_path: Path) -> None:
    fs, root = fs_for(str(tmp_path / "staging"))
    fs.makedirs(root)
    assert Heartbeat(fs, root).every == 10.0
    with dask.config.set({"adp.io.heartbeat-seconds": 0.1}):
        beat = Heartbeat(fs, root)
    assert beat.every == 0.1
    beat.start()
    try:
        first = float(fs.cat_file(f"{root}/{HEARTBEAT}"))
        deadline = time.monotonic() + 5
        while float(fs.cat_file(f"{root}/{HEARTBEAT}") or 0) <= first:
            assert time.monotonic() < deadline, "no second beat within 5 s"
            time.sleep(0.02)
    finally:
        beat.stop()


def test_adp_clean_stale_after_defaults_to_the_config(tmp_path: Path) -> None:
    from adp.io.cli import clean

    target = tmp_path / "out" / "scores"
    root = target.parent / f".{target.name}{STAGING_MARK}0123456789abcdef"
    _silent_owner_elsewhere(root, age=50)

    kept = CliRunner().invoke(clean, [str(target)])
    assert kept.exit_code == 0, kept.output
    assert root.is_dir() and "0 abandoned staging folder(s) removed, 1 in use kept" in kept.output

    with dask.config.set({"adp.io.stale-seconds": 30}):
        removed = CliRunner().invoke(clean, [str(target)])
    assert removed.exit_code == 0, removed.output
    assert not root.exists() and f"removed {root}" in removed.output

    _silent_owner_elsewhere(root, age=50)
    with dask.config.set({"adp.io.stale-seconds": 30}):  # the option still wins
        kept = CliRunner().invoke(clean, [str(target), "--stale-after", "100"])
    assert kept.exit_code == 0 and root.is_dir(), kept.output

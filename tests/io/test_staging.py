"""Staging: where it lives (inside the output's allowed root, never derived from a name),
its owner record and heartbeat, and its removal once the owner is gone: by the next job's
check and by `adp clean`, never while the owner runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask.config
import pytest
from click.testing import CliRunner

from adp.io.cleaning import clean_output, clean_registered
from adp.io.owners import HEARTBEAT, OWNER, Owner, abandoned, fs_for, registered
from adp.io.sinks import FolderSink, TableSink
from adp.io.staging import STAGING_MARK, Staging

REPO = Path(__file__).resolve().parents[2]

# Opens a staging for argv[1] (overwrite); with argv[2] == "aside", dies between the two
# renames of its commit (the old output moved aside, the new one not yet in place).
_OWNER = r"""
import os, signal, sys, time
from pathlib import Path
from adp.io.staging import Staging
staging = Staging(sys.argv[1], "overwrite", heartbeat=0.2)
staging.open()
final = Path(staging.path("final"))
final.mkdir()
(final / "part.00000.parquet").write_bytes(b"new")
if sys.argv[2] == "aside":
    real = os.rename
    def rename(src, dst):
        real(src, dst)
        if str(dst).endswith("/old"):
            os.kill(os.getpid(), signal.SIGKILL)
    os.rename = rename
    staging.commit(str(final), {"files": [{"path": "part.00000.parquet", "rows": 1}]})
print(staging.root, flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def state(tmp_path_factory):
    """A state directory of the test's own (its register), shared with its subprocesses."""
    folder = tmp_path_factory.mktemp("state")
    with dask.config.set({"adp.state-dir": str(folder)}):
        yield folder


def _owner(target: Path, how: str = "wait") -> tuple[subprocess.Popen[str], str]:
    from adp.config import settings

    env = {**os.environ, "PYTHONPATH": str(REPO), "DASK_ADP__STATE_DIR": str(settings().state_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(target), how], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    root = proc.stdout.readline().strip()
    return proc, root


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_staging_sits_beside_the_output_or_in_the_state_dir_never_outside_the_roots(
    tmp_path,
) -> None:
    root = tmp_path / "allowed"
    (root / "team").mkdir(parents=True)
    with dask.config.set({"adp.io.allowed-roots": [str(root)]}):
        inside = Staging(str(root / "team" / "scores"))
        assert Path(inside.root).parent == root / "team"
        assert Path(inside.root).name.startswith(".scores" + STAGING_MARK)
        at_root = Staging(str(root))  # its parent is outside the allowed roots
        from adp.config import settings

        assert Path(at_root.root).parent == settings().state_dir / "staging"
    remote = Staging("s3://bucket/team/scores")
    assert remote.root.startswith("s3://bucket/team/scores/_adp_v/")


def test_a_table_sink_stages_under_a_random_token_whatever_the_names(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    folder = tmp_path / "staging"
    staging = TableSink(url, "scores", staging_dir=folder)._new_staging()
    assert Path(staging.root).parent == folder
    assert len(Path(staging.root).name) == 16 and "scores" not in staging.root
    with staging.session():
        owner = json.loads((Path(staging.root) / OWNER).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert owner["target"] == "" and "sqlite" not in json.dumps(owner)
        assert (Path(staging.root) / HEARTBEAT).exists()
    assert not Path(staging.root).exists()


def test_the_heartbeat_is_rewritten_while_the_staging_is_open(tmp_path) -> None:
    staging = Staging(str(tmp_path / "scores"), heartbeat=0.1)
    with staging.session():
        beat = Path(staging.root) / HEARTBEAT
        first = float(beat.read_text())
        deadline = time.monotonic() + 10
        while float(beat.read_text() or 0) <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert float(beat.read_text()) > first
        assert any(token == staging.token for token, _ in registered())
    assert not any(token == staging.token for token, _ in registered())


def test_owners_gone_pid_reused_and_stale_hosts(tmp_path) -> None:
    fs, root = fs_for(str(tmp_path / "s"))
    fs.makedirs(root)
    me = Owner.here(root)
    fs.pipe_file(f"{root}/{OWNER}", me.to_json().encode())
    assert not abandoned(fs, root)  # this live process
    reused = Owner(me.host, me.pid, me.process_started - 1000, me.started_at, root)
    fs.pipe_file(f"{root}/{OWNER}", reused.to_json().encode())
    assert abandoned(fs, root)  # the pid now runs another process
    elsewhere = Owner("another-host", 1, 0.0, me.started_at, root)
    fs.pipe_file(f"{root}/{OWNER}", elsewhere.to_json().encode())
    fs.pipe_file(f"{root}/{HEARTBEAT}", b"0")
    assert not abandoned(fs, root)  # a fresh heartbeat
    old = time.time() - 600
    os.utime(f"{root}/{HEARTBEAT}", (old, old))
    assert abandoned(fs, root)  # a stale one


def test_staging_of_a_killed_job_is_removed_by_the_next_check_not_a_live_one(tmp_path) -> None:
    target = tmp_path / "out" / "scores"
    live, live_root = _owner(target)
    dead, dead_root = _owner(target)
    try:
        _kill(dead)
        assert Path(dead_root).is_dir() and Path(live_root).is_dir()
        FolderSink(str(target), sources=[]).check()  # the next job
        assert not Path(dead_root).exists()
        assert Path(live_root).is_dir()  # its owner still runs
        assert clean_output(str(target)).kept == [live_root]
    finally:
        _kill(live)
    FolderSink(str(target)).check()
    assert list((tmp_path / "out").iterdir()) == []


def test_adp_clean_removes_abandoned_staging_and_restores_an_interrupted_overwrite(
    tmp_path,
) -> None:
    from adp.io.cli import clean

    target = tmp_path / "scores"
    target.mkdir()
    (target / "part.00000.parquet").write_bytes(b"old")
    (target / "_adp_manifest.json").write_text('{"files": [{"path": "part.00000.parquet"}]}')
    dead, root = _owner(target, "aside")  # killed between moving the old output aside ...
    dead.wait(timeout=60)
    assert dead.returncode == -signal.SIGKILL
    assert not target.exists()  # ... and putting the new one in place
    live, live_root = _owner(tmp_path / "other")
    try:
        result = CliRunner().invoke(clean, [])
        assert result.exit_code == 0, result.output
        assert f"restored {target}" in result.output
        assert "1 abandoned staging folder(s) removed, 1 in use kept" in result.output
        assert (target / "part.00000.parquet").read_bytes() == b"old"  # the old output whole
        assert Path(live_root).is_dir()
    finally:
        _kill(live)
    assert clean_registered().removed == [live_root]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_adp_clean_from_the_command_line_prints_what_it_did(tmp_path) -> None:
    dead, root = _owner(tmp_path / "scores")
    _kill(dead)
    done = subprocess.run(
        [sys.executable, "-m", "adp.cli", "clean", str(tmp_path / "scores")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DASK_ADP__STATE_DIR": str(tmp_path / "elsewhere")},
    )
    assert done.returncode == 0, done.stderr
    assert f"removed {root}" in done.stdout
    assert "0 job(s) whose client is gone closed as interrupted" in done.stdout
    assert not Path(root).exists()

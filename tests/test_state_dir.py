"""ADP's state (audit trail, registry, staging owners) lives in the user's data directory by
default, so every command finds the same state from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import platformdirs
import pytest

from adp.config import default_state_dir, settings

ADP = Path(sys.executable).with_name("adp")

APPEND = """
from adp.observe.audit import AuditLog
with AuditLog() as log:
    for i in range(3):
        log.append("job.run", action="score", job_id=f"j{i}", resource=f"file:///d/{i}")
"""


def test_the_default_is_the_user_data_directory() -> None:
    with dask.config.set({"adp.state-dir": None}):
        assert settings().state_dir == Path(platformdirs.user_data_dir("adp", appauthor=False))
    assert default_state_dir().is_absolute()


def test_a_configured_state_dir_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with dask.config.set({"adp.state-dir": "rel/state"}):
        assert settings().state_dir == tmp_path / "rel" / "state"
    with dask.config.set({"adp.state-dir": "~/x"}):
        assert settings().state_dir == Path.home() / "x"


@pytest.mark.slow
def test_audit_show_gives_the_same_records_from_any_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DASK_ADP__STATE_DIR"}
    env["XDG_DATA_HOME"] = str(tmp_path / "data-home")  # platformdirs' data dir on Linux
    first, second = tmp_path / "here", tmp_path / "elsewhere" / "deeper"
    for cwd in (first, second):
        cwd.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", APPEND], cwd=first, env=env, check=True, timeout=120)
    shown = []
    for cwd in (first, second):
        done = subprocess.run(
            [str(ADP), "audit", "show", "--json"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        shown.append(json.loads(done.stdout))
    assert [r["job_id"] for r in shown[0]] == ["j0", "j1", "j2"]
    assert shown[0] == shown[1]
    assert (tmp_path / "data-home" / "adp" / "audit.db").is_file()
    assert not (first / ".adp").exists() and not (second / ".adp").exists()
    verified = subprocess.run(
        [str(ADP), "audit", "verify"], cwd=second, env=env, capture_output=True, text=True
    )
    assert verified.returncode == 0 and "3 audit records verified" in verified.stdout

"""``adp audit verify`` and ``adp audit show``, in-process and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from observe_helpers import tamper

from adp.observe.audit import AuditLog
from adp.observe.cli import audit


def fill(log: AuditLog) -> None:
    for i in range(5):
        log.append("job.run", action="score", job_id=f"job-{i % 2}", resource=f"file:///d/{i}")


def test_verify_ok(log: AuditLog) -> None:
    fill(log)
    result = CliRunner().invoke(audit, ["verify"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 5 audit records verified")
    assert "checkpoint at seq 5" in result.stdout


def test_verify_names_the_first_bad_seq(log: AuditLog) -> None:
    fill(log)
    tamper(log, "UPDATE adp_audit SET identity = 'mallory' WHERE seq = 3")
    result = CliRunner().invoke(audit, ["verify", "--url", log.url])
    assert result.exit_code == 1
    assert "FAILED at seq 3" in result.stderr
    assert "does not match its hash" in result.stderr


def test_verify_is_strict_by_default(log: AuditLog, state_dir: Path) -> None:
    fill(log)
    (state_dir / "audit.checkpoint").unlink()
    strict = CliRunner().invoke(audit, ["verify"])
    assert strict.exit_code == 1 and "FAILED at seq 1" in strict.stderr
    assert "not covered by a signed checkpoint" in strict.stderr
    lenient = CliRunner().invoke(audit, ["verify", "--lenient"])
    assert lenient.exit_code == 0 and "not anchored" in lenient.stderr


def test_verify_missing_log(state_dir: Path) -> None:
    result = CliRunner().invoke(audit, ["verify"])
    assert result.exit_code == 2
    assert "no audit log" in result.output
    assert not state_dir.exists()  # verifying creates nothing


def test_show(log: AuditLog) -> None:
    fill(log)
    runner = CliRunner()
    text = runner.invoke(audit, ["show", "--job", "job-1"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and "job=job-1" in lines[0] and "score" in lines[0]
    as_json = runner.invoke(audit, ["show", "--json", "--since", "2000-01-01"])
    records = json.loads(as_json.stdout)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert set(records[0]) >= {"seq", "time", "where", "identity", "outcome", "prev_hash", "hash"}
    future = runner.invoke(audit, ["show", "--since", "2999-01-01T00:00:00+00:00"])
    assert future.exit_code == 0 and "no audit records match" in future.stderr
    bad = runner.invoke(audit, ["show", "--since", "soon"])
    assert bad.exit_code != 0


def test_module_runs_as_a_subprocess(log: AuditLog, state_dir: Path) -> None:
    fill(log)
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state_dir)}
    cmd = [sys.executable, "-m", "adp.observe.cli", "verify", "--url", log.url]
    ok = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 5 audit records verified")
    tamper(log, "DELETE FROM adp_audit WHERE seq = 2")
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "FAILED at seq 2: record 2 is missing" in bad.stderr

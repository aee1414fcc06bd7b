"""A writer killed between committing its record and signing the checkpoint: its signed
write intent lets the log go on (and verify), without letting anyone else's record in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from observe_helpers import tamper

from adp.errors import AuditError
from adp.observe.audit import AuditLog

_DIE_BEFORE_SIGNING = """
import os, sys
from adp.observe import checkpoint
from adp.observe.audit import AuditLog

log = AuditLog(sys.argv[1], state_dir=sys.argv[2])
log.append("job.submit", action="submit", resource="lake")
checkpoint.CheckpointStore.advance = lambda *args, **kwargs: os._exit(9)
log.append("job.run", action="run", resource="lake", outcome="started")
"""


def _killed_writer(url: str, state_dir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _DIE_BEFORE_SIGNING, url, str(state_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 9, done.stderr


def test_a_writer_killed_before_signing_does_not_stop_the_log(tmp_path: Path) -> None:
    url, state = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "state"
    _killed_writer(url, state)
    with AuditLog(url, state_dir=state) as log:
        assert [r.seq for r in log.records()] == [1, 2]
        assert log.verify().ok  # strict: the intent covers the unsigned record
        record = log.append("job.run", action="run", resource="lake", outcome="interrupted")
        assert record.seq == 3
        result = log.verify()
        assert result.ok and result.records_checked == 3


def test_an_intent_never_covers_a_record_inserted_behind_the_writers_back(
    tmp_path: Path,
) -> None:
    url, state = f"sqlite:///{tmp_path / 'audit.db'}", tmp_path / "state"
    _killed_writer(url, state)
    with AuditLog(url, state_dir=state) as log:  # an attacker rewrites the unsigned head
        tamper(log, "UPDATE adp_audit SET resource = 'elsewhere' WHERE seq = 2")
        assert not log.verify().ok
        with pytest.raises(AuditError, match="first uncovered: seq 2"):
            log.append("job.run", action="run", resource="lake")
        assert [r.seq for r in log.records()] == [1, 2]
    assert os.path.exists(state / "audit.intent")

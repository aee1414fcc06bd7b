"""Resumable jobs: a stopped attempt keeps its staged scores with their SHA-256, and the
next attempt computes only the partitions that are missing or do not verify, publishing
output byte-identical to an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from distributed import Client

from adp.jobs.interrupts import JobCancelled
from adp.jobs.runner import run_job
from adp.jobs.spec import JobSpec

PARTS = 8


def _lake(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for i in range(PARTS):
        frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
        frame.insert(0, "id", np.arange(i * 400, (i + 1) * 400))
        frame.to_parquet(folder / f"part.{i}.parquet", index=False)
    return folder


def _spec(lake: Path, out: Path, **detector: Any) -> JobSpec:
    return JobSpec.from_dict(
        {
            "name": "resumable",
            "source": {"uri": str(lake), "features": ["a", "b", "c"], "key": ["id"]},
            "detector": {"name": "iforest", "params": {"n_estimators": 50, **detector}},
            "fit": {"random_state": 0},
            "threshold": {"contamination": 0.05},
            "output": {"uri": str(out)},
        }
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))
    }


def _staging(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.adp-staging-*"))


def _cancel_after(done_needed: int) -> tuple[Any, Any]:
    seen: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        seen[stage] = done

    def stop_check() -> None:
        if seen.get("score", 0) >= done_needed:
            raise JobCancelled("tester")

    return progress, stop_check


class MemoryKeeper:
    """Keeps the fitted model's bytes and digest in memory (the service keeps them in its
    state directory and database)."""

    def __init__(self) -> None:
        self.kept: tuple[bytes, str] | None = None
        self.saves = 0

    def load(self) -> Any:
        if self.kept is None:
            return None
        data, digest = self.kept
        assert hashlib.sha256(data).hexdigest() == digest
        return pickle.loads(data), digest  # noqa: S301 - bytes this test kept itself

    def save(self, data: bytes, digest: str) -> None:
        self.kept, self.saves = (data, digest), self.saves + 1


def _run(spec: JobSpec, client: Client, **kwargs: Any) -> Any:
    return run_job(spec, client=client, show_progress=False, **kwargs)


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    return _lake(tmp_path / "lake")


def test_a_resumed_job_reuses_verified_partitions_and_publishes_identical_output(
    tmp_path: Path, lake: Path, client: Client
) -> None:
    plain = _run(_spec(lake, tmp_path / "plain"), client)
    assert plain.reused_partitions == 0

    out = tmp_path / "resumed"
    keeper = MemoryKeeper()
    progress, stop_check = _cancel_after(3)
    with pytest.raises(JobCancelled):
        _run(
            _spec(lake, out),
            client,
            resume_key="job-1",
            keeper=keeper,
            progress=progress,
            stop_check=stop_check,
        )
    assert not out.exists()
    kept = _staging(out)
    assert len(kept) == 1 and (kept[0] / "_adp_resumable").exists()
    staged = sorted((kept[0] / "raw").glob("*.parquet"))
    assert 3 <= len(staged) <= PARTS

    result = _run(_spec(lake, out), client, resume_key="job-1", keeper=keeper)
    assert keeper.saves == 1, "the resumed attempt scores with the first attempt's model"
    assert result.reused_partitions == len(staged)
    # an uninterrupted run of the same model gives the same bytes, partition by partition
    again = _run(_spec(lake, tmp_path / "again"), client, resume_key="job-1b", keeper=keeper)
    assert again.reused_partitions == 0
    assert _digests(out) == _digests(tmp_path / "again")
    assert len(_digests(out)) == PARTS and plain.rows == result.rows
    manifest = json.loads((out / "_adp_manifest.json").read_text())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == _digests(out)
    assert _staging(out) == [], "a committed attempt leaves no staging"


def test_a_staged_file_that_does_not_verify_is_computed_again(
    tmp_path: Path, lake: Path, client: Client
) -> None:
    keeper = MemoryKeeper()
    out = tmp_path / "resumed"
    progress, stop_check = _cancel_after(PARTS)
    with pytest.raises(JobCancelled):
        _run(
            _spec(lake, out),
            client,
            resume_key="job-2",
            keeper=keeper,
            progress=progress,
            stop_check=stop_check,
        )
    raw = _staging(out)[0] / "raw"
    staged = sorted(raw.glob("*.parquet"))
    assert len(staged) == PARTS
    staged[2].write_bytes(staged[2].read_bytes()[:-10] + b"0123456789")  # corrupt, same size
    staged[5].unlink()  # missing

    result = _run(_spec(lake, out), client, resume_key="job-2", keeper=keeper)
    assert result.reused_partitions == PARTS - 2
    plain = _run(_spec(lake, tmp_path / "plain"), client, resume_key="job-2b", keeper=keeper)
    assert _digests(out) == _digests(tmp_path / "plain")
    assert result.rows == plain.rows


def test_another_model_reuses_nothing(tmp_path: Path, lake: Path, client: Client) -> None:
    out = tmp_path / "resumed"
    progress, stop_check = _cancel_after(PARTS)
    with pytest.raises(JobCancelled):
        _run(_spec(lake, out), client, resume_key="job-3", progress=progress, stop_check=stop_check)
    result = _run(_spec(lake, out, max_samples=64), client, resume_key="job-3")
    assert result.reused_partitions == 0
    assert (out / "_adp_manifest.json").exists()


def test_cleaning_keeps_resumable_staging_until_asked(
    tmp_path: Path, lake: Path, client: Client
) -> None:
    from adp.io.cleaning import clean_output

    out = tmp_path / "resumed"
    progress, stop_check = _cancel_after(1)
    with pytest.raises(JobCancelled):
        _run(_spec(lake, out), client, resume_key="job-4", progress=progress, stop_check=stop_check)
    assert len(_staging(out)) == 1
    # its owner (this process) is alive, so nothing goes either way
    assert clean_output(str(out)).removed == []
    # a job without the key does not touch it (its check cleans only what is abandoned)
    _run(_spec(lake, tmp_path / "other"), client)
    assert len(_staging(out)) == 1

    # its owner dies (a killed service): still kept for the resume, unless asked
    owner_file = _staging(out)[0] / "_adp_owner.json"
    owner = json.loads(owner_file.read_text())
    owner["pid"], owner["process_started"] = 2**22 + 17, 1.0  # no such process
    owner_file.write_text(json.dumps(owner))
    assert clean_output(str(out)).removed == [] and len(_staging(out)) == 1
    removed = clean_output(str(out), resumable=True).removed
    assert len(removed) == 1 and _staging(out) == []


def test_without_a_resume_key_a_stopped_job_leaves_no_staging(
    tmp_path: Path, lake: Path, client: Client
) -> None:
    out = tmp_path / "plain"
    progress, stop_check = _cancel_after(1)
    with pytest.raises(JobCancelled):
        _run(_spec(lake, out), client, progress=progress, stop_check=stop_check)
    assert _staging(out) == [] and not out.exists()

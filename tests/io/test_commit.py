"""The commit step: exclusive with mode error (300 local races, races on S3 with a
conditional PUT), atomic on S3 (a client killed at every request of an overwrite leaves
the old or the new output whole), and overwrite replacing only what ADP committed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import adp
from adp.errors import OutputExistsError
from adp.io.outputs import MANIFEST, VERSIONS
from adp.io.parts import WrittenPart, part_path, write_part
from adp.io.staging import Staging, manifest_for

REPO = Path(__file__).resolve().parents[2]


def _tiny(ids: range) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": list(ids)}), sink)
    return sink.getvalue().to_pybytes()


def _stage_local(staging: Staging, payload: bytes, rows: int) -> tuple[str, dict[str, Any]]:
    final = Path(staging.path("final"))
    final.mkdir(parents=True)
    (final / "part.00000.parquet").write_bytes(payload)
    part = WrittenPart(str(final / "part.00000.parquet"), rows, len(payload))
    return str(final), manifest_for([part], job=staging.token)


def _race(target: str, commit_one: Any, n: int = 2) -> list[Any]:
    """Run ``commit_one(i, barrier)`` in ``n`` threads released together; their results."""
    barrier = threading.Barrier(n)
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: commit_one(i, barrier), range(n)))


def test_300_local_races_with_mode_error_have_exactly_one_winner(tmp_path) -> None:
    payload = _tiny(range(3))
    single_winners = 0
    for race in range(300):
        target = tmp_path / f"out{race}" / "scores"

        def commit_one(i: int, barrier: threading.Barrier) -> tuple[str, str | None]:
            staging = Staging(str(target), "error", heartbeat=60)
            with staging.session():
                folder, manifest = _stage_local(staging, payload, 3)
                barrier.wait()
                try:
                    staging.commit(folder, manifest)
                    return staging.token, None
                except OutputExistsError as exc:
                    return staging.token, str(exc)

        results = _race(str(target), commit_one)
        winners = [token for token, error in results if error is None]
        losers = [error for _, error in results if error is not None]
        assert len(winners) == 1, results
        committed = json.loads((target / MANIFEST).read_text())
        assert committed["job"] == winners[0]  # the winner's output, not replaced
        assert f"{target}/{MANIFEST}" in losers[0] and winners[0] in losers[0]
        assert sorted(p.name for p in target.parent.iterdir()) == ["scores"]  # no staging
        single_winners += 1
    assert single_winners == 300


def test_overwrite_replaces_an_adp_output_and_keeps_readers_on_whole_data(tmp_path) -> None:
    target = tmp_path / "scores"
    for rows in (3, 5):
        staging = Staging(str(target), "overwrite")
        with staging.session():
            folder, manifest = _stage_local(staging, _tiny(range(rows)), rows)
            staging.commit(folder, manifest)
        assert len(adp.read(str(target)).compute(scheduler="sync")) == rows
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]
    (target / "mine.csv").write_text("a\n1\n")
    staging = Staging(str(target), "overwrite")
    with staging.session(), pytest.raises(OutputExistsError, match="'mine.csv'"):
        staging.commit(*_stage_local(staging, _tiny(range(2)), 2))
    assert (target / "mine.csv").exists() and len(
        pd.read_parquet(target / "part.00000.parquet")
    ) == 5


def _stage_remote(staging: Staging, ids: range, files: int, options: dict) -> tuple[str, dict]:
    folder = staging.path("final")
    chunk = len(ids) // files
    parts = []
    for i in range(files):
        frame = pd.DataFrame({"id": list(ids[i * chunk : (i + 1) * chunk])})
        parts.append(write_part(frame, part_path(folder, i), options))
    return folder, manifest_for(parts, job=staging.token)


@pytest.mark.slow
def test_s3_races_with_mode_error_have_exactly_one_winner_by_conditional_put(s3) -> None:
    bucket = s3.bucket()
    options = s3.storage_options
    for race in range(10):
        target = f"s3://{bucket}/race{race}/scores"

        def commit_one(i: int, barrier: threading.Barrier) -> tuple[str, str | None]:
            staging = Staging(target, "error", options, heartbeat=60)
            with staging.session():
                folder, manifest = _stage_remote(staging, range(i * 10, i * 10 + 10), 1, options)
                barrier.wait()
                try:
                    staging.commit(folder, manifest)
                    return staging.token, None
                except OutputExistsError as exc:
                    return staging.token, str(exc)

        results = _race(target, commit_one)
        winners = [token for token, error in results if error is None]
        assert len(winners) == 1, results
        loser = next(error for _, error in results if error is not None)
        assert f"{target}/{MANIFEST}" in loser and winners[0] in loser
        back = adp.read(target, storage_options=options).compute(scheduler="sync")
        assert len(back) == 10
        versions = s3.fs().ls(f"{bucket}/race{race}/scores/{VERSIONS}")
        assert [v.rsplit("/", 1)[-1] for v in versions] == [winners[0]]  # loser's removed


def test_a_manifest_committed_after_a_listing_is_read_not_hidden_by_the_cache(s3) -> None:
    """The race the test above once lost: the loser listed the folder before the winner's
    PUT, and s3fs answered the manifest's read from that listing (not found)."""
    from adp.io.outputs import _fs, read_manifest

    bucket = s3.bucket()
    options = s3.storage_options
    target = f"s3://{bucket}/late/scores"
    fs, root = _fs(target, options)
    fs.pipe_file(f"{root}/{VERSIONS}/v1/part.0.parquet", _tiny(range(3)))
    assert read_manifest(target, options) is None
    fs.find(root)  # the listing now cached says: no manifest
    other = s3.fs()  # another job's client, its own connection and cache
    other.pipe_file(f"{root}/{MANIFEST}", json.dumps({"job": "winner-job"}).encode())
    assert (read_manifest(target, options) or {}).get("job") == "winner-job"


def _commit_s3(target: str, options: dict, ids: range, files: int, mode: str = "error") -> None:
    staging = Staging(target, mode, options)  # type: ignore[arg-type]
    with staging.session():
        staging.commit(*_stage_remote(staging, ids, files, options))


# Imports once, then forks one committing process per line "TARGET KILL_AT" it reads, and
# answers with how that process ended ("signal 9" or "exit 0 requests N"). Nothing touches
# s3fs before a fork, so every child starts its own event loop and connections.
_ZYGOTE = r"""
import json, os, signal, sys
import fsspec, pyarrow as pa, pyarrow.parquet as pq
from adp.io.outputs import WrittenPart
from adp.io.staging import Staging, manifest_for

options = json.loads(sys.argv[1])

def commit(target, kill_at, report):
    staging = Staging(target, "overwrite", options, heartbeat=3600)
    staging.open()
    folder = staging.path("final")
    fs = fsspec.core.url_to_fs(target, **options)[0]
    parts = []
    for i in range(3):
        path = f"{folder}/part.{i:05d}.parquet"
        with fs.open(path, "wb") as f:
            pq.write_table(pa.table({"id": range(1000 + 200 * i, 1200 + 200 * i)}), f)
        parts.append(WrittenPart(path, 200, fs.size(path)))
    count = 0

    def hook(**kwargs):
        nonlocal count
        count += 1
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    fs.s3.meta.events.register("before-send.s3", hook)
    staging.commit(folder, manifest_for(parts, job=staging.token))
    staging.cleanup()
    os.write(report, str(count).encode())

for line in sys.stdin:
    target, kill_at = line.split()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            commit(target, int(kill_at), write)
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    said = os.read(read, 64).decode()
    os.close(read)
    if os.WIFSIGNALED(status):
        print("signal", os.WTERMSIG(status), flush=True)
    else:
        print("exit", os.WEXITSTATUS(status), "requests", said or "?", flush=True)
"""


@pytest.mark.slow
def test_a_client_killed_at_every_request_of_an_s3_overwrite_leaves_one_output_whole(
    s3,
) -> None:
    """SIGKILL the committing process before its k-th S3 request, for every k: adp.read
    gives all rows of the old output or all rows of the new one, never neither."""
    from adp.io.cleaning import clean_output

    bucket = s3.bucket()
    options = s3.storage_options
    old, new = set(range(0, 400)), set(range(1000, 1600))
    zygote = subprocess.Popen(
        [sys.executable, "-c", _ZYGOTE, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert zygote.stdin is not None and zygote.stdout is not None

    def commit_in_a_child(target: str, kill_at: int) -> list[str]:
        _commit_s3(target, options, range(0, 400), 2)  # the old output, committed
        zygote.stdin.write(f"{target} {kill_at}\n")  # type: ignore[union-attr]
        zygote.stdin.flush()  # type: ignore[union-attr]
        return zygote.stdout.readline().split()  # type: ignore[union-attr]

    def ids(target: str) -> set[int]:
        read = adp.read(target, storage_options=options).compute(scheduler="sync")["id"]
        assert len(read) == len(set(read))  # nothing twice
        return set(read)

    try:
        # A run nobody kills counts the commit's requests.
        said = commit_in_a_child(f"s3://{bucket}/kill-none/scores", 10**9)
        assert said[:2] == ["exit", "0"], said
        total = int(said[-1])
        assert ids(f"s3://{bucket}/kill-none/scores") == new
        assert 10 <= total <= 60, total
        outcomes = []
        for k in range(1, total + 1):
            target = f"s3://{bucket}/kill{k}/scores"
            assert commit_in_a_child(target, k) == ["signal", "9"], k
            seen = ids(target)
            assert seen in (old, new), k  # whole, one or the other
            outcomes.append("new" if seen == new else "old")
            clean_output(target, options)  # the dead owner's version goes, the output stays
            assert ids(target) == seen
            assert len(s3.fs().ls(f"{bucket}/kill{k}/scores/{VERSIONS}")) == 1
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)
    assert outcomes.count("old") >= 1 and outcomes.count("new") >= 1
    print(f"kill points {total}: {outcomes.count('old')} old, {outcomes.count('new')} new")

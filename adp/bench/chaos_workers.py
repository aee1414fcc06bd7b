"""Chaos on the workers: a worker SIGKILLed part-way through a job, a partition that kills
every worker that reads it, and a partition larger than a worker's memory.

Jobs run in this process through :func:`adp.jobs.runner.run_job` on a LocalCluster of
worker processes (each under a nanny, which restarts a killed worker).
"""

from __future__ import annotations

import os
import random
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from adp.bench.chaos_env import (
    FEATURES,
    debris,
    job_spec,
    make_lake,
    output_fingerprint,
    staged_parts,
    tree_digest,
    worker_pids,
)
from adp.bench.measure import timed

__all__ = ["PoisonPartition", "oversized_partition", "poison_partition", "worker_kills"]

POISON_PLUGIN = "adp-chaos-poison"


class PoisonPartition(WorkerPlugin):
    """Ends the worker process (``os._exit``) whenever it starts reading partition
    ``index`` of a Parquet source: a partition that kills its worker every time."""

    name = POISON_PLUGIN

    def __init__(self, index: int) -> None:
        self.index = index

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if (
            finish == "executing"
            and isinstance(key, tuple)
            and key[-1] == self.index
            and str(key[0]).startswith("read_parquet")
        ):
            print(f"chaos: partition {self.index} kills its worker", file=sys.stderr, flush=True)
            os._exit(70)


def _run(spec: dict[str, Any], client: Any) -> tuple[float, BaseException | None]:
    """Run ``spec`` on ``client``: its seconds and the error it raised (or None)."""
    from adp.jobs.runner import run_job
    from adp.jobs.spec import JobSpec

    error: BaseException | None = None
    with timed() as timer:
        try:
            run_job(JobSpec.from_dict(spec), client=client, show_progress=False)
        except Exception as exc:
            error = exc
    return timer.seconds, error


def _message(error: BaseException | None) -> str | None:
    from adp.clitools import translate_error

    return None if error is None else str(translate_error(error))


def _kill_at(
    client: Any, parent: Path, at_parts: int, done: threading.Event, record: dict[str, Any]
) -> None:
    """SIGKILL one worker process once ``at_parts`` partitions are staged under ``parent``."""
    pids = worker_pids(client)
    while not done.is_set():
        staged = staged_parts(parent)
        if staged >= at_parts:
            address, pid = random.Random(at_parts).choice(sorted(pids.items()))
            os.kill(pid, signal.SIGKILL)
            record.update(killed_pid=pid, killed_worker=address, staged_at_kill=staged)
            return
        time.sleep(0.02)


def worker_kills(
    root: Path,
    client: Any,
    *,
    partitions: int = 100,
    rows: int = 2000,
    points: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9),
) -> dict[str, Any]:
    """Kill one worker of ``client`` at each share of ``points`` of a ``partitions``-partition
    job; compare every output with one of a job without kills.

    Passes when every killed run succeeds with the data files of the undisturbed run
    (per-file SHA-256), nothing outside the manifest in its folder, and no staging left.
    """
    lake = make_lake(root / "lake", partitions, rows)
    workers = len(worker_pids(client))
    baseline_secs, error = _run(job_spec(str(lake), str(root / "base" / "scores")), client)
    if error is not None:
        raise error
    baseline = output_fingerprint(root / "base" / "scores")
    runs = []
    for share in points:
        client.wait_for_workers(workers, timeout=120)
        parent = root / f"kill-{round(share * 100)}"
        parent.mkdir()
        record: dict[str, Any] = {"at": share, "at_parts": round(share * 2 * partitions)}
        done = threading.Event()
        killer = threading.Thread(
            target=_kill_at, args=(client, parent, record["at_parts"], done, record), daemon=True
        )
        killer.start()
        seconds, error = _run(job_spec(str(lake), str(parent / "scores")), client)
        done.set()
        killer.join()
        got = output_fingerprint(parent / "scores")
        record.update(
            seconds=seconds,
            error=_message(error),
            killed="killed_pid" in record,
            identical=bool(got.parts) and got.parts == baseline.parts,
            strays=got.strays,
            debris=debris(parent, root / "state"),
        )
        record["passed"] = bool(
            record["killed"]
            and record["error"] is None
            and record["identical"]
            and not record["strays"]
            and not record["debris"]
        )
        runs.append(record)
    return {
        "scenario": "worker_kills",
        "partitions": partitions,
        "rows": partitions * rows,
        "workers": workers,
        "baseline_seconds": baseline_secs,
        "baseline_files": len(baseline.parts),
        "runs": runs,
        "identical": sum(r["identical"] for r in runs),
        "count": len(runs),
        "passed": all(r["passed"] for r in runs),
    }


def _partitions_named(message: str | None) -> list[int]:
    """The partitions an error names first ("partition 7 (task ..." or "partitions 7 and
    17 (task ...")."""
    found = re.match(r"partitions? ((?:\d+(?:, | and )?)+) \(task ", message or "")
    return [int(n) for n in re.findall(r"\d+", found.group(1))] if found else []


def poison_partition(root: Path, client: Any, *, index: int = 7) -> dict[str, Any]:
    """A partition that kills every worker reading it, in a job overwriting a committed
    output: the job fails naming the partition, the output stays byte-identical, no
    staging is left. Uses the lake and the output of :func:`worker_kills` (``root``)."""
    published = root / "base" / "scores"
    before = tree_digest(published)
    client.register_plugin(PoisonPartition(index))
    try:
        seconds, error = _run(job_spec(str(root / "lake"), str(published)), client)
    finally:
        client.unregister_worker_plugin(POISON_PLUGIN)
    message = _message(error)
    untouched = tree_digest(published) == before
    left = debris(published.parent, root / "state")
    named = index in _partitions_named(message)
    return {
        "scenario": "poison_partition",
        "partition": index,
        "seconds": seconds,
        "error": message,
        "suspects": getattr(error, "suspects", None),
        "names_partition": named,
        "one_line": message is not None and "\n" not in message,
        "output_untouched": untouched,
        "debris": left,
        "passed": bool(named and message and "\n" not in message and untouched and not left),
    }


def _write_oversized(path: Path, nbytes: int) -> int:
    """A Parquet file of ``nbytes`` in memory (float64 features, an int64 key) that is small
    on disk (constant features, a delta-encoded key); returns its rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = nbytes // (8 * (len(FEATURES) + 1))
    columns = {name: pa.array(np.full(rows, float(i))) for i, name in enumerate(FEATURES)}
    columns["row"] = pa.array(np.arange(rows, dtype="int64") + 10**9)
    pq.write_table(
        pa.table(columns),
        path,
        use_dictionary=FEATURES,
        column_encoding={"row": "DELTA_BINARY_PACKED"},
        row_group_size=1 << 20,
    )
    return int(rows)


def oversized_partition(
    root: Path,
    *,
    memory_limit: int = 600 * 2**20,
    factor: float = 1.5,
    workers: int = 2,
    deadline: float = 120.0,
) -> dict[str, Any]:
    """A job whose last partition holds ``factor`` times a worker's ``memory_limit`` (bytes),
    on a LocalCluster of ``workers`` such workers: an error naming the partition within
    ``deadline`` seconds."""
    from distributed import Client, LocalCluster

    lake = make_lake(root / "big-lake", 3, 2000)
    index = 3
    rows = _write_oversized(lake / f"part-{index:05d}.parquet", int(memory_limit * factor))
    parent = root / "big"
    parent.mkdir()
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            memory_limit=memory_limit,
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        seconds, error = _run(job_spec(str(lake), str(parent / "scores")), client)
    message = _message(error)
    named = index in _partitions_named(message)
    left = debris(parent, root / "state")
    return {
        "scenario": "oversized_partition",
        "memory_limit_bytes": memory_limit,
        "partition_bytes": rows * 8 * (len(FEATURES) + 1),
        "partition": index,
        "seconds": seconds,
        "error": message,
        "suspects": getattr(error, "suspects", None),
        "names_partition": named,
        "output_absent": not (parent / "scores").exists(),
        "debris": left,
        "passed": bool(
            named and seconds < deadline and not left and not (parent / "scores").exists()
        ),
    }

"""What the chaos scenarios share: a lake, a job spec, the output's fingerprint, the debris a
job may leave, and the progress of a running job read from its staging folder.

Progress counts the partitions a job has staged: a score job of ``n`` partitions writes ``n``
raw score files (the score stage) and ``n`` final files (the flag stage) into its staging
folder, so ``staged / 2n`` is the share of its partition tasks that have finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adp.io.staging import STAGING_MARK

__all__ = [
    "FEATURES",
    "PreloadedCluster",
    "debris",
    "job_spec",
    "make_lake",
    "output_fingerprint",
    "preloaded_cluster",
    "staged_parts",
    "worker_pids",
]

#: The feature columns of a chaos lake.
FEATURES = ["a", "b", "c", "d"]
MANIFEST = "_adp_manifest.json"


def make_lake(folder: Path, partitions: int, rows: int, *, seed: int = 0) -> Path:
    """Write ``partitions`` Parquet files of ``rows`` rows (four normal features and a
    unique ``row`` key) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(partitions):
        part = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
        part["row"] = np.arange(rows, dtype="int64") + rows * i
        part.to_parquet(folder / f"part-{i:05d}.parquet", index=False)
    return folder


def job_spec(source: str, output: str, **sections: Any) -> dict[str, Any]:
    """A deterministic isolation-forest job from ``source`` to ``output`` (overwrite), as a
    spec dict; ``sections`` replace whole sections."""
    spec: dict[str, Any] = {
        "name": "chaos",
        "source": {"uri": source, "key": ["row"], "features": FEATURES},
        "detector": {
            "name": "isolation_forest",
            "params": {"n_estimators": 50, "random_state": 0},
        },
        "fit": {"sample_rows": 5000, "random_state": 0},
        "threshold": {"contamination": 0.05},
        "output": {"uri": output, "mode": "overwrite"},
        "profile": False,
    }
    spec.update(sections)
    return spec


@dataclass(frozen=True)
class Fingerprint:
    """A committed output: SHA-256 of every data file the manifest lists (by path), and the
    files in the folder the manifest does not list (it itself excepted)."""

    parts: dict[str, str]
    strays: list[str]


def output_fingerprint(folder: Path) -> Fingerprint:
    """The :class:`Fingerprint` of the output ``folder`` (empty when it has no manifest)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        strays = (
            sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.is_dir() else []
        )
        return Fingerprint({}, strays)
    listed = [entry["path"] for entry in json.loads(manifest_path.read_text())["files"]]
    parts = {path: hashlib.sha256((folder / path).read_bytes()).hexdigest() for path in listed}
    present = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    return Fingerprint(parts, sorted(present - set(listed) - {MANIFEST}))


def tree_digest(folder: Path) -> str:
    """One SHA-256 over every file under ``folder`` (hidden ones included) and its path."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def debris(parent: Path, state: Path) -> list[str]:
    """What interrupted jobs left: staging folders beside outputs in ``parent``, staging
    owners registered in the state directory ``state``, and staging under it."""
    found = [str(p) for p in parent.glob(f".*{STAGING_MARK}*")] if parent.is_dir() else []
    for sub in ("staging-owners", "staging"):
        folder = state / sub
        if folder.is_dir():
            found += [str(p) for p in folder.iterdir()]
    return sorted(found)


def staged_parts(parent: Path) -> int:
    """Partition files staged so far by the jobs writing beside outputs in ``parent``."""
    count = 0
    for staging in parent.glob(f".*{STAGING_MARK}*"):
        for stage in ("raw", "final"):
            try:
                count += sum(1 for name in os.listdir(staging / stage) if name.startswith("part."))
            except OSError:
                continue
    return count


def worker_pids(client: Any) -> dict[str, int]:
    """The process id of every worker of ``client``, by worker address."""
    return dict(client.run(os.getpid))


@dataclass(frozen=True)
class PreloadedCluster:
    """A ``dask scheduler --preload adp.observe.plugins`` with worker processes."""

    address: str
    metrics_url: str
    env: dict[str, str]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def preloaded_cluster(
    root: Path, env: dict[str, str], workers: int = 2
) -> Iterator[PreloadedCluster]:
    """Start a preloaded scheduler and ``workers`` single-threaded worker processes in
    subprocesses (their output in ``root/cluster.log``); stop them at the end."""
    dask_bin = str(Path(sys.executable).with_name("dask"))
    port = _free_port()
    scheduler_file = root / "scheduler.json"
    common = ["--scheduler-file", str(scheduler_file)]
    with (root / "cluster.log").open("wb") as log:
        procs = [
            subprocess.Popen(
                [dask_bin, "scheduler", "--preload", "adp.observe.plugins", "--host", "127.0.0.1"]
                + ["--port", "0", "--dashboard-address", f"127.0.0.1:{port}", *common],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            subprocess.Popen(
                [dask_bin, "worker", "--nworkers", str(workers), "--nthreads", "1"]
                + ["--no-dashboard", *common, "--local-directory", str(root / "workers")],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
        ]
        try:
            deadline = time.monotonic() + 60
            while not scheduler_file.exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the scheduler did not start: see {root / 'cluster.log'}")
                time.sleep(0.1)
            time.sleep(0.2)
            address = json.loads(scheduler_file.read_text())["address"]
            from distributed import Client

            with Client(address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=60)
            yield PreloadedCluster(address, f"http://127.0.0.1:{port}/metrics", env)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGINT)
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def jobs_failed(metrics_url: str) -> float:
    """``adp_jobs_failed_total`` on a scheduler's ``/metrics``."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    if not metrics_url.startswith("http://"):
        raise ValueError(f"not a scheduler's http metrics URL: {metrics_url!r}")
    with urllib.request.urlopen(metrics_url, timeout=10) as response:  # noqa: S310 (http only)
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "adp_jobs_failed":
            return sum(s.value for s in family.samples if s.name == "adp_jobs_failed_total")
    return 0.0


def adp_env(state: Path) -> dict[str, str]:
    """This process's environment for an ``adp`` subprocess with its own state directory."""
    env = {**os.environ, "DASK_ADP__STATE_DIR": str(state)}
    env.pop("DASK_ADP__AUDIT__URL", None)
    return env

"""A Dask cluster laid out as it is deployed, for benchmarks: a ``dask scheduler`` process
(with ADP's plugins preloaded) and a ``dask worker`` process of single-threaded workers,
beside the benchmark's own process (used by ``adp bench stream``)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adp.errors import BenchmarkError

__all__ = ["process_cluster"]


@contextlib.contextmanager
def process_cluster(workers: int) -> Iterator[Any]:
    """A client of a ``dask scheduler`` process (with ADP's plugins) and a ``dask worker``
    process of ``workers`` single-threaded workers, stopped afterwards."""
    from distributed import Client

    dask_cli = str(Path(sys.executable).with_name("dask"))
    if not os.access(dask_cli, os.X_OK):
        raise BenchmarkError(
            f"no `dask` command beside {sys.executable} to start a scheduler and workers "
            "with: install distributed in this environment, or use --cluster local"
        )
    with tempfile.TemporaryDirectory() as tmp:
        address_file = str(Path(tmp) / "scheduler.json")
        common = ["--scheduler-file", address_file, "--no-dashboard"]
        scheduler = subprocess.Popen(
            [
                dask_cli,
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--preload",
                "adp.observe.plugins",
                *common,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs = [scheduler]
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(address_file) and time.monotonic() < deadline:
                if scheduler.poll() is not None:
                    break
                time.sleep(0.1)
            if not os.path.exists(address_file):
                raise BenchmarkError(
                    f"`dask scheduler` did not start (exit status {scheduler.poll()}): try "
                    "--cluster local"
                )
            procs.append(
                subprocess.Popen(
                    [
                        dask_cli,
                        "worker",
                        "--nworkers",
                        str(workers),
                        "--nthreads",
                        "1",
                        "--host",
                        "127.0.0.1",
                        *common,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            with Client(scheduler_file=address_file, timeout=60) as client:
                client.wait_for_workers(workers, timeout=120)
                yield client
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in reversed(procs):
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()

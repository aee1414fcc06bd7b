"""The ``adp serve`` subprocess that ``adp bench service`` loads: started on a free port with
a state folder and a LocalCluster of its own, waited for (``GET /healthz``), its resident
memory sampled (the service process, and its whole process tree: the service with its
LocalCluster's nannies and workers), and stopped with SIGTERM (SIGKILL after a grace).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from adp.bench.measure import timed
from adp.errors import BenchmarkError

__all__ = ["TreeRss", "running_service", "service_env", "stop_service"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(state: Path, workers: int) -> dict[str, str]:
    """This environment for ``adp serve``: its own state and a LocalCluster of ``workers``,
    whatever scheduler, database or policy the caller's environment names."""
    from adp.bench.chaos_env import adp_env

    env = adp_env(state)
    for name in ("DASK_SCHEDULER_ADDRESS", "DASK_SCHEDULER__ADDRESS"):
        env.pop(name, None)
    for name in ("DATABASE", "SCHEDULER", "POLICY", "HOST", "PORT", "MAX_RUNNING"):
        env.pop(f"DASK_ADP__SERVICE__{name}", None)
    env["DASK_ADP__CLUSTER__N_WORKERS"] = str(workers)
    env["DASK_ADP__CLUSTER__THREADS_PER_WORKER"] = "1"
    return env


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running_service(
    root: Path, *, workers: int, max_running: int, start_timeout: float = 120.0
) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, Any]]]:
    """Start ``adp serve`` and stop it when the block ends (:func:`stop_service`).

    Parameters
    ----------
    root : pathlib.Path
        Its state goes to ``root/state``, its output to ``root/service.log``.
    workers : int
        Worker processes of its LocalCluster.
    max_running : int
        Jobs it runs at once.
    start_timeout : float, default 120
        Seconds to wait for ``GET /healthz`` to answer 200.

    Yields
    ------
    tuple
        The process, the service's URL, and a dict that receives :func:`stop_service`'s
        answer when the block ends.

    Raises
    ------
    adp.errors.BenchmarkError
        When the service exits or does not answer in time (the end of its log quoted).
    """
    import httpx

    port = _free_port()
    log = root / "service.log"
    command = [sys.executable, "-m", "adp.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--max-running", str(max_running)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=service_env(root / "state", workers),
        )
    url = f"http://127.0.0.1:{port}"
    stopped: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise BenchmarkError(
                    f"adp serve exited with {proc.returncode} before answering: {_tail(log)}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"adp serve did not answer /healthz within {start_timeout:.0f} s: {_tail(log)}"
                )
            time.sleep(0.2)
        yield proc, url, stopped
    finally:
        stopped.update(stop_service(proc))


def stop_service(proc: subprocess.Popen[bytes], grace: float = 20.0) -> dict[str, Any]:
    """SIGTERM ``proc``; SIGKILL it (and what is left of its tree) after ``grace`` s.

    Returns
    -------
    dict
        ``exit_code`` (uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a
        clean exit), ``seconds``, ``sigkilled`` and ``children_left`` (killed after 5 s).
    """
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    killed = False
    with timed() as t:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            killed = True
            proc.kill()
            proc.wait()
    _, alive = psutil.wait_procs(tree, timeout=5)
    for child in alive:
        with suppress(psutil.NoSuchProcess):
            child.kill()
    return {
        "exit_code": proc.returncode,
        "seconds": round(t.seconds, 2),
        "sigkilled": killed,
        "children_left": len(alive),
    }


class TreeRss:
    """Resident memory of the service, sampled in a thread: its API process, the service
    proper (the API process and its job driver process, which holds the scheduler of a
    LocalCluster the service starts), and the whole process tree (with the cluster's
    nannies and workers).

    Parameters
    ----------
    pid : int
        The root process (the service).
    interval : float
        Seconds between samples.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        import psutil

        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = (0, 0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adp-tree-rss", daemon=True)

    def sample(self) -> tuple[int, int, int]:
        """``(api, service, tree)``: resident bytes of the API process, of it with its job
        driver process, and of it with all its descendants."""
        import psutil

        own = service = total = 0
        try:
            own = service = total = self.process.memory_info().rss
            children = self.process.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0, 0, 0
        for child in children:
            with suppress(psutil.NoSuchProcess):
                rss = child.memory_info().rss
                total += rss
                if "adp.service.driving" in child.cmdline():
                    service += rss
        self.peak = (
            max(self.peak[0], own),
            max(self.peak[1], service),
            max(self.peak[2], total),
        )
        return own, service, total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

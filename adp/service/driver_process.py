"""The service's handle on its job driver process (:mod:`adp.service.driving`).

The process answering HTTP only decides and records; a child process takes queued jobs
from the job database and runs them. The two share nothing but the database and two
pipes: a byte down the child's stdin wakes it when a job is queued, closing its stdin
stops it (running jobs end ``interrupted``). When the parent dies, even by SIGKILL, the
pipe closes and the child stops too; when the child dies, the parent hears of it, lets
``on_exit`` mark the jobs it ran (``interrupted``, audited) and starts a new one, a
bounded number of times.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import dask.config

from adp.config import ServiceSettings
from adp.errors import ServiceStartError

__all__ = ["DRIVER_MALLOC", "DriverProcess", "driver_environ"]

logger = logging.getLogger(__name__)

#: Restarts allowed within :data:`RESTART_WINDOW` seconds before the parent gives up.
RESTART_LIMIT = 3
RESTART_WINDOW = 600.0
#: glibc malloc settings for the driver, unless the environment sets them. The driver runs
#: job after job on several threads (and hosts the scheduler of the service's own
#: LocalCluster); with glibc's default of 8 arenas per core and no trimming, memory freed
#: by finished jobs stays resident. distributed sets ``MALLOC_TRIM_THRESHOLD_`` for its
#: workers for the same reason. Measured with ``adp bench service`` (100 jobs): driver
#: growth 112 MB with the defaults, 72 MB with ``MALLOC_ARENA_MAX=2``.
DRIVER_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_TRIM_THRESHOLD_": "65536"}


def driver_environ(environ: Any) -> dict[str, str]:
    """The driver process's environment: ``environ`` plus :data:`DRIVER_MALLOC` where
    ``environ`` does not set those variables itself."""
    return {**DRIVER_MALLOC, **environ}


class DriverProcess:
    """Start, wake, supervise and stop the job driver's process.

    Parameters
    ----------
    options : adp.config.ServiceSettings
        The service's settings (the child uses them, not its own copy of the config).
    scheduler : str, optional
        The scheduler jobs run on; None: the child starts a LocalCluster of its own
        (``adp.cluster`` settings), or uses ``DASK_SCHEDULER_ADDRESS`` when it is set.
    on_exit : callable, optional
        Called with the exit status when the child dies without being asked to stop,
        before a new child starts.
    start_timeout : float, default 120
        Seconds the child may take to connect to its cluster.
    """

    def __init__(
        self,
        options: ServiceSettings,
        scheduler: str | None = None,
        *,
        on_exit: Callable[[int], None] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.options = options
        self.scheduler = scheduler
        self.on_exit = on_exit
        self.start_timeout = start_timeout
        self.address: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._restarts: list[float] = []
        self._supervisor: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> str:
        """Start the child and wait until it drives jobs.

        Returns
        -------
        str
            The address of the scheduler jobs run on.

        Raises
        ------
        adp.errors.ServiceStartError
            When the child cannot connect to its cluster (its reason), or does not
            answer within ``start_timeout``.
        """
        self.address = self._spawn()
        self._supervisor = threading.Thread(
            target=self._supervise, name="adp-driver-supervisor", daemon=True
        )
        self._supervisor.start()
        return self.address

    def _spawn(self) -> str:
        setup = {
            "config": dask.config.config,
            "service": self.options.model_dump(mode="json", by_alias=True),
            "scheduler": self.scheduler,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "adp.service.driving"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=driver_environ(os.environ),
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            process.stdin.write(json.dumps(setup, default=str).encode() + b"\n")
            process.stdin.flush()
            answer = _read_line(process.stdout, self.start_timeout)
        except (OSError, TimeoutError) as exc:
            _end(process, 5.0)
            raise ServiceStartError(
                f"the job driver process did not start within {self.start_timeout:.0f} s "
                f"({exc}); its log is on this service's stderr"
            ) from None
        message = json.loads(answer) if answer else {"error": "it exited during start"}
        if "address" not in message:
            _end(process, 5.0)
            raise ServiceStartError(f"the job driver cannot start: {message.get('error')}")
        process.stdout.close()
        with self._lock:
            self._process = process
        return str(message["address"])

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                process = self._process
            if process is None:
                return
            status = process.wait()
            if self._stopping.is_set():
                return
            logger.error("the job driver process exited (status %s) while jobs may run", status)
            if self.on_exit is not None:
                try:
                    self.on_exit(status)
                except Exception:
                    logger.exception("recording the job driver's exit failed")
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW] + [now]
            if len(self._restarts) > RESTART_LIMIT:
                logger.critical(
                    "the job driver died %d times in %.0f s; queued jobs wait until the "
                    "service restarts",
                    len(self._restarts),
                    RESTART_WINDOW,
                )
                with self._lock:
                    self._process = None
                return
            try:
                self.address = self._spawn()
            except ServiceStartError as exc:
                logger.critical("%s; queued jobs wait until the service restarts", exc)
                with self._lock:
                    self._process = None
                return

    @property
    def alive(self) -> bool:
        """Whether the child runs now."""
        with self._lock:
            return self._process is not None and self._process.poll() is None

    def wake(self) -> None:
        """Ask the child to look at the queue now (a job was queued)."""
        with self._lock:
            process = self._process
            if process is None or process.stdin is None or process.stdin.closed:
                return
            try:
                process.stdin.write(b"w")
                process.stdin.flush()
            except (OSError, ValueError):  # it died: the supervisor restarts it
                pass

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the child: running jobs end ``interrupted``; SIGKILL after ``timeout``."""
        self._stopping.set()
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            _end(process, timeout)
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(5.0)


def _read_line(stream: Any, timeout: float) -> bytes:
    """One line from a pipe, or :class:`TimeoutError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer")
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.strip()


def _end(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait up to ``timeout`` for ``process`` to exit; then SIGTERM, then SIGKILL."""
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            process.wait(timeout if sig is None else 10.0)
            return
        except subprocess.TimeoutExpired:
            continue

"""What every benchmark measures the same way: timers, best-of-N and median timings,
resident memory (peak, current, sampled), fresh task keys and warm-up.

Every ``adp bench`` command times through this module, so that a "second" means the same
thing in all of them: wall time from :func:`time.perf_counter`, in this process.
"""

from __future__ import annotations

import resource
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


class Timer:
    """Wall seconds of a block timed by :func:`timed`: ``seconds`` is set when it ends."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = float("nan")


@contextmanager
def timed() -> Iterator[Timer]:
    """Time a block: ``with timed() as t: work()``, then ``t.seconds``.

    The time is recorded also when the block raises.
    """
    timer = Timer()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - timer.started


def per_call(call: Callable[[], Any], calls: int) -> float:
    """Mean seconds per call over ``calls`` back-to-back calls of ``call`` (at least one)."""
    calls = max(1, calls)
    with timed() as timer:
        for _ in range(calls):
            call()
    return timer.seconds / calls


def median_and_best(times: Sequence[float]) -> tuple[float, float]:
    """The median and the fastest of ``times`` (one benchmark variant's runs)."""
    return statistics.median(times), min(times)


def fresh_token() -> str:
    """A new random hex token: pass it into a benchmark's tasks so that every run has fresh
    task keys (dask would otherwise reuse results still in memory)."""
    return uuid.uuid4().hex


def best_of(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed calls of ``run`` (at least one), and its last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        with timed() as timer:
            result = run()
        best = min(best, timer.seconds)
    return best, result


def _status_bytes(field: str) -> int | None:
    """A memory figure of this process from ``/proc/self/status`` (``VmHWM``, ``VmRSS``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """Peak resident memory of this process (VmHWM; ru_maxrss as a fallback)."""
    peak = _status_bytes("VmHWM")
    if peak is None:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    return peak


def current_rss() -> int:
    """Current resident memory of this process in bytes (VmRSS), 0 when unknown."""
    return _status_bytes("VmRSS") or 0


class RssSampler:
    """Sample this process's resident memory in a background thread.

    Parameters
    ----------
    interval : float
        Seconds between samples.
    """

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.start_bytes = 0
        self.max_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="adp-rss-sampler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.max_bytes = max(self.max_bytes, current_rss())

    def __enter__(self) -> RssSampler:
        self.start_bytes = self.max_bytes = current_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.max_bytes = max(self.max_bytes, current_rss())

    @property
    def growth_bytes(self) -> int:
        """Largest sample minus the value at the start."""
        return max(0, self.max_bytes - self.start_bytes)


@contextmanager
def cluster(
    client: Any = None,
    *,
    n_workers: int = 2,
    reuse_current: bool = False,
    reuse_configured: bool = False,
    install_plugins: bool | None = None,
) -> Iterator[Any]:
    """The client a benchmark runs on, closed afterwards only if started here.

    Parameters
    ----------
    client : distributed.Client, optional
        Used as it is when given.
    n_workers : int, default 2
        Worker processes (one thread each) of a LocalCluster started here.
    reuse_current : bool, default False
        Else use the current default client, if there is one.
    reuse_configured : bool, default False
        Else connect to the scheduler in dask's ``scheduler-address`` config, if set.
    install_plugins : bool, optional
        Install ADP's plugins on a LocalCluster started here; default
        ``adp.cluster.install-plugins``.

    Yields
    ------
    distributed.Client
    """
    if client is not None:
        yield client
        return
    import dask.config

    from adp.cluster import connect

    if reuse_current:
        from distributed.client import default_client

        try:
            current = default_client()
        except ValueError:  # no current client
            pass
        else:
            yield current
            return
    if reuse_configured and dask.config.get("scheduler-address", None):
        with connect() as configured:
            yield configured
        return
    options: dict[str, Any] = {"n_workers": n_workers, "threads_per_worker": 1}
    if install_plugins is not None:
        options["install_plugins"] = install_plugins
    with connect(dashboard_address="127.0.0.1:0", **options) as started:
        yield started


def warm_fit_and_score(detector: str, features: int) -> None:
    """Fit ``detector`` on 1,000 random rows and score them with ADP's scorer, so that a timed
    run pays neither for imports nor for numba compilation (run it on every worker)."""
    from adp.detect import fitting
    from adp.detect.registry import detector_info

    X = np.random.default_rng(0).normal(size=(1000, features))
    fitting.fit_matrix(detector_info(detector), {}, 0.1, X).scorer.decision_function(X)


def warm_workers(client: Any, detector: str, features: int) -> None:
    """:func:`warm_fit_and_score` as a task on every worker of ``client`` (tasks, not
    ``client.run``, so compilation does not block the workers' event loops)."""
    futures = [
        client.submit(warm_fit_and_score, detector, features, workers=[address], pure=False)
        for address in client.scheduler_info(n_workers=-1)["workers"]
    ]
    client.gather(futures)

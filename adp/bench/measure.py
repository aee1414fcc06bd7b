"""What every benchmark measures the same way: best-of-N timings, resident memory, warm-up."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def best_of(run: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The fastest of ``repeats`` timed calls of ``run`` (at least one), and its last result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
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


def warm_fit_and_score(detector: str, features: int) -> None:
    """Fit ``detector`` on 1,000 random rows and score them with ADP's scorer, so that a timed
    run pays neither for imports nor for numba compilation (run it on every worker)."""
    from adp.detect import fitting
    from adp.detect.registry import detector_info

    X = np.random.default_rng(0).normal(size=(1000, features))
    fitting.fit_matrix(detector_info(detector), {}, 0.1, X).scorer.score_samples(X)


def warm_workers(client: Any, detector: str, features: int) -> None:
    """:func:`warm_fit_and_score` as a task on every worker of ``client`` (tasks, not
    ``client.run``, so compilation does not block the workers' event loops)."""
    futures = [
        client.submit(warm_fit_and_score, detector, features, workers=[address], pure=False)
        for address in client.scheduler_info(n_workers=-1)["workers"]
    ]
    client.gather(futures)

"""Where a fit-and-detect job's seconds go, read off the scheduler's task stream.

The scheduler records every task's compute window (its ``TaskStreamPlugin``, on by
default; :func:`distributed.get_task_stream` collects them). A job that fits on a sample
and then detects runs in six phases, each waiting for the one before:

- ``plan``: from the job's start to its first task's start (the client opens the source
  and plans the sample);
- ``sample``: from there to the fit task's start (the sample's pass over the source);
- ``fit``: the fit task(s) (``_fit_parts``: one task, or one per model);
- ``handoff``: from the fit's end to the first task after it (the fitted result's way to
  the client, the model's task, the next graph's submission);
- ``score``: from there to the end of the last task of the prefix that computed longest
  after the fit (the fused read-and-score tasks);
- ``threshold_and_flags``: from there to the job's end (the threshold's last passes, the
  flags, the result back to the client).

The six add up to the whole job: each boundary is kept between the job's start and end
(the workers shift the stream's times by an estimate of their clock offset). Without a
fit task in the stream (a frame small enough
to be fitted in the client's process) there is nothing to split: the result is empty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dask.utils import key_split

__all__ = ["PHASES", "job_phases"]

PHASES = ("plan", "sample", "fit", "handoff", "score", "threshold_and_flags")
_FIT_TASK = "fit_parts"  # key_split of adp.detect.fitting's _fit_parts tasks


def _computes(tasks: Sequence[dict[str, Any]]) -> list[tuple[float, float, str]]:
    """``(start, stop, prefix)`` of every compute window in a task stream."""
    out = []
    for task in tasks:
        key = task["key"]
        prefix = key_split(key[0] if isinstance(key, tuple) else key)
        for window in task.get("startstops", ()):
            if window.get("action") == "compute":
                out.append((float(window["start"]), float(window["stop"]), prefix))
    return out


def job_phases(tasks: Sequence[dict[str, Any]], start: float, done: float) -> dict[str, float]:
    """Seconds of each of :data:`PHASES` in one job.

    Parameters
    ----------
    tasks : sequence of dict
        The job's task stream (``get_task_stream(client).data``).
    start, done : float
        The job's start and end on the client (``time.time()``, the workers' clock on one
        machine).

    Returns
    -------
    dict
        Phase name to seconds, in :data:`PHASES` order; empty when the stream holds no fit
        task or nothing after it.
    """
    computes = _computes(tasks)
    fit = [c for c in computes if c[2] == _FIT_TASK]
    if not fit:
        return {}
    fit_start, fit_end = min(c[0] for c in fit), max(c[1] for c in fit)
    after = [c for c in computes if c[0] >= fit_end]
    if not after:
        return {}
    busy: dict[str, float] = defaultdict(float)
    for begin, end, prefix in after:
        busy[prefix] += end - begin
    scoring = max(busy, key=busy.__getitem__)
    score_start = min(c[0] for c in after)
    score_end = max(c[1] for c in after if c[2] == scoring)
    first = min(c[0] for c in computes)
    marks = [start, first, fit_start, fit_end, score_start, score_end, done]
    # A worker shifts its tasks' times by its estimate of the scheduler's clock offset
    # (distributed's scheduler_delay, from heartbeat round trips), which a loaded machine
    # got wrong by over two seconds: a mark is kept inside the job, so no phase is negative
    # and the six add up to its seconds.
    marks = [min(max(mark, start), done) for mark in marks]
    return {name: marks[i + 1] - marks[i] for i, name in enumerate(PHASES)}

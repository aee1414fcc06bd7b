"""Which partitions were on the workers that died, when dask gives up on a task.

distributed raises ``KilledWorker`` for a task that was *processing* on a worker each time
one died (``allowed-failures`` + 1 times). "Processing" includes the tasks a worker holds
queued beside the one it runs (``worker-saturation`` sends more than one per thread), so
the task dask names may have been a bystander of the partition that really kills its
worker: naming only it sends the user to the wrong file.

:func:`suspects_named` reads the scheduler's ``remove-worker`` events of the block (each
lists the tasks that were processing on the worker that died), counts how often each
partition of the failed task's layer was there, and records on the exception
(``exc.suspects``) every partition that was there as often as the worst of them, for
:func:`adp.clitools.translate_error` to name them all. The events outlive the tasks, so
this works however the failed graph was computed (``dask.compute`` releases its futures
before it raises).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["add_suspects", "count_suspects", "suspects_named"]

#: The attribute of a ``KilledWorker`` exception that lists the suspected partitions.
SUSPECTS = "suspects"


def count_suspects(events: Iterable[tuple[float, Any]], name: str, since: float) -> Counter[int]:
    """How often each partition of layer ``name`` was processing on a worker that died
    unexpectedly, in the scheduler's ``"all"`` events from ``since`` (a timestamp) on."""
    counts: Counter[int] = Counter()
    for stamp, event in events:
        if stamp < since or not isinstance(event, dict):
            continue
        if event.get("action") != "remove-worker" or event.get("expected"):
            continue
        for key in event.get("processing-tasks", ()):
            # a key may come back as a list (the events travel as msgpack)
            layer, index = (key[0], key[-1]) if isinstance(key, tuple | list) else (key, None)
            if layer == name and isinstance(index, int) and len(key) > 1:
                counts[index] += 1
    return counts


def add_suspects(client: Any, exc: BaseException, since: float) -> None:
    """Record on a ``KilledWorker`` ``exc`` the partitions that were on the workers that
    died since ``since`` as often as the worst of them (sorted, dask's own among them);
    leave any other exception alone.

    Best effort: a scheduler that cannot be asked leaves the exception as dask raised it.
    """
    if type(exc).__name__ != "KilledWorker" or hasattr(exc, SUSPECTS):
        return
    key = getattr(exc, "task", None)
    if not (isinstance(key, tuple) and len(key) > 1 and isinstance(key[-1], int)):
        return
    try:
        counts = count_suspects(client.get_events("all"), str(key[0]), since)
    except Exception:  # noqa: BLE001 - the original error matters more than this detail
        return
    worst = max(counts.values(), default=0)
    named = {key[-1]} | {part for part, times in counts.items() if times >= worst}
    setattr(exc, SUSPECTS, sorted(named))


@contextlib.contextmanager
def suspects_named(client: Any) -> Iterator[None]:
    """Within the block, a ``KilledWorker`` gets its suspects (:func:`add_suspects`,
    counting the workers that died since the block began) before it propagates."""
    since = time.time() - 1.0  # the scheduler's clock may lag this one a little
    try:
        yield
    except BaseException as exc:
        add_suspects(client, exc, since)
        raise

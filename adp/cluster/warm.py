"""Warm the workers of a LocalCluster ADP starts: they import the scoring stack at once.

A new worker process imports what a task needs when its first task arrives: dask's
dataframe, scikit-learn, SciPy, PyOD and ADP's detection modules, several seconds on a
small machine. The client imports much of the same before it submits anything, so on a
fresh cluster the two imports ran one after the other. :func:`warm_workers` has both sides
import at the same time, while the cluster starts: the workers on their event loops
(``Client.run``), the client in its own thread, and returns when both are done.

The workers' imports must be over before any task reaches them. A first version sent each
worker an import *task* and did not wait: the task's thread and the worker's event loop,
unpickling the next messages, then imported ``dask.dataframe`` at the same time, one of
them saw it half initialised ("cannot import name 'dataframe' from 'dask'"), and the
worker lost its scheduler connection. Imports run on the event loop, with nothing else
running on the worker yet, cannot race.

Only clusters ADP starts itself are warmed; a scheduler someone else runs gets nothing it
did not ask for.
"""

from __future__ import annotations

import importlib
import logging
import threading
from typing import Any

__all__ = ["WARM_MODULES", "import_scoring_stack", "warm_workers"]

logger = logging.getLogger(__name__)

#: What the first tasks of a job import: reading, sampling, fitting, scoring, threshold.
WARM_MODULES = (
    "adp.io.read",
    "adp.detect.sampling",
    "adp.detect.fitting",
    "adp.detect.detection",
    "adp.detect.threshold",
    "pyod.models.base",
)


def import_scoring_stack(modules: tuple[str, ...] = WARM_MODULES) -> list[str]:
    """Import ``modules`` in this process; returns their names."""
    for name in modules:
        importlib.import_module(name)
    return list(modules)


def warm_workers(client: Any, timeout: float = 120.0) -> dict[str, list[str]]:
    """Import the scoring stack on every current worker and in this process, at once.

    Parameters
    ----------
    client : distributed.Client
        A client of a cluster no task has reached yet.
    timeout : float
        Seconds to wait for the workers; past it, a warning and no more waiting (their
        first tasks then import what is left).

    Returns
    -------
    dict
        Worker address to the modules it imported (empty after a timeout or an error).
    """
    done: dict[str, list[str]] = {}

    def on_workers() -> None:
        try:
            done.update(client.run(import_scoring_stack))
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation only
            logger.warning("warming the workers failed (%s); they import on first use", exc)

    thread = threading.Thread(target=on_workers, name="adp-warm-workers", daemon=True)
    thread.start()
    import_scoring_stack()
    thread.join(timeout)
    if thread.is_alive():
        logger.warning("the workers took over %.0f s to import the scoring stack", timeout)
        return {}
    return done

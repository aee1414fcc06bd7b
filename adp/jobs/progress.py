"""Progress of a job's distributed stages: shown with rich, reported to a callback (the
service's job record), and stopped between two finished tasks when a job is cancelled."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, wait
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: ``progress(stage, done, total)``: called when a stage starts and after every task.
ProgressCallback = Callable[[str, int, int], None]
#: Called between finished tasks; raises (e.g. :class:`adp.jobs.interrupts.JobCancelled`)
#: to stop the job.
StopCheck = Callable[[], None]

#: Seconds between two cancellation checks while no task finishes.
POLL_SECONDS = 0.25


def compute_with_progress(
    client: Client,
    tasks: Sequence[Any],
    description: str,
    *,
    console: Console | None = None,
    show: bool = True,
    annotate: Callable[[], Any] | None = None,
    progress: ProgressCallback | None = None,
    stop_check: StopCheck | None = None,
) -> list[Any]:
    """Compute dask collections on ``client``, one progress step per finished task.

    Results come back in the order of ``tasks``. The first failure cancels the rest and
    is raised, and so does whatever ``stop_check`` raises.

    Parameters
    ----------
    client : distributed.Client
        Where to compute.
    tasks : sequence
        Dask collections or delayed objects.
    description : str
        The stage's name (``"score"``, ``"flag"``, ...).
    console : rich.console.Console, optional
        Where the progress bar goes.
    show : bool, default True
        Draw a progress bar.
    annotate : callable, optional
        Returns a context manager (such as ``dask.annotate(...)``) entered while the graph
        is submitted.
    progress : callable, optional
        ``progress(description, done, total)``, after submission and after every task.
    stop_check : callable, optional
        Called at least every :data:`POLL_SECONDS` while tasks run; whatever it raises
        cancels the stage's futures and propagates.
    """
    with annotate() if annotate else contextlib.nullcontext():
        futures = client.compute(list(tasks))
    total = len(futures)
    if not show and progress is None and stop_check is None:
        return list(client.gather(futures))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    bars = Progress(*columns, console=console, transient=False, disable=not show)
    with bars:
        bar = bars.add_task(description, total=total)
        pending = set(futures)
        try:
            if progress is not None:
                progress(description, 0, total)
            while pending:
                if stop_check is not None:
                    stop_check()
                try:
                    with client.as_current():  # distributed.wait uses the default client
                        done, pending = wait(
                            pending, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED"
                        )
                except TimeoutError:
                    continue
                for future in done:
                    if future.status == "error":
                        future.result()  # raises the task's exception
                bars.advance(bar, len(done))
                if progress is not None:
                    progress(description, total - len(pending), total)
        except BaseException:
            client.cancel(futures)
            raise
    return list(client.gather(futures))

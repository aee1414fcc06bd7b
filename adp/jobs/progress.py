"""Progress of a job's distributed stages, shown with rich while futures complete."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from distributed import Client, as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def compute_with_progress(
    client: Client,
    tasks: Sequence[Any],
    description: str,
    *,
    console: Console | None = None,
    show: bool = True,
    annotate: Callable[[], Any] | None = None,
) -> list[Any]:
    """Compute dask collections on ``client``, one progress step per finished task.

    Results come back in the order of ``tasks``. The first failure cancels the rest and
    is raised. ``annotate`` returns a context manager (such as ``dask.annotate(...)``)
    entered while the graph is submitted.
    """
    with annotate() if annotate else contextlib.nullcontext():
        futures = client.compute(list(tasks))
    if not show:
        return list(client.gather(futures))
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task(description, total=len(futures))
        try:
            for future in as_completed(futures):
                if future.status == "error":
                    future.result()  # raises the task's exception
                progress.advance(bar)
        except BaseException:
            client.cancel(futures)
            raise
    return list(client.gather(futures))

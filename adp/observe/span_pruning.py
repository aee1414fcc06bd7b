"""Forget finished spans on a long-running scheduler.

distributed's spans extension keeps every span, and through it every
:class:`~distributed.scheduler.TaskGroup` it ever aggregated, for the life of the scheduler
(dask/distributed#7977, open: "spans currently live forever on the scheduler"). A batch
cluster that lives for one job does not notice. The ADP service's scheduler runs job after
job for days: measured with ``adp bench service``, the spans of 100 small jobs held about
35 MB of the driver process that hosts the service's LocalCluster, growing without bound.

:class:`SpanPruner` does what that issue proposes: a root span whose every task group has
been forgotten by the scheduler, and which stopped more than ``keep_seconds`` ago, is
removed with its children. What the dashboard and :meth:`Client.get_spans` report about the
last ``keep_seconds`` is unchanged. Workers report span metrics with their heartbeats
(about once a second); a span is kept long after its last task, so no heartbeat names a
removed span.

The pruner reads and edits the extension's documented attributes (``spans``,
``root_spans``, ``spans_search_by_name``, ``spans_search_by_tag``) of the distributed
release pinned in ``constraints.txt``; when they are not there it does nothing and says so
once in the scheduler's log.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["PRUNER_NAME", "SpanPruner", "prune_spans"]

logger = logging.getLogger(__name__)

#: The name the pruner is registered under (idempotent: one per scheduler).
PRUNER_NAME = "adp-span-pruner"

_ATTRIBUTES = ("spans", "root_spans", "spans_search_by_name", "spans_search_by_tag")


def _forgotten(span: Any, task_groups: dict[Any, Any]) -> bool:
    """Whether the scheduler no longer holds any task group of ``span``'s tree."""
    return all(task_groups.get(tg.name) is not tg for tg in span.traverse_groups())


def _stopped(span: Any) -> float:
    """When the last task of ``span``'s tree stopped (``Span.stop`` fails on a tree
    without task groups)."""
    return max((tg.stop for tg in span.traverse_groups()), default=span.enqueued)


def prune_spans(scheduler: Any, *, keep_seconds: float, now: float | None = None) -> int:
    """Remove the finished root spans of ``scheduler`` that stopped ``keep_seconds`` ago.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        A scheduler with the spans extension.
    keep_seconds : float
        A root span is kept this long after its last task stopped.
    now : float, optional
        The current time (``time.time()``), for tests.

    Returns
    -------
    int
        The number of spans removed, children included.
    """
    ext = scheduler.extensions.get("spans")
    if ext is None or not all(hasattr(ext, name) for name in _ATTRIBUTES):
        return 0
    now = time.time() if now is None else now
    task_groups = scheduler.task_groups
    expired = [
        root
        for root in ext.root_spans
        if _forgotten(root, task_groups) and _stopped(root) < now - keep_seconds
    ]
    if not expired:
        return 0
    gone: set[str] = set()
    for root in expired:
        gone.update(span.id for span in root.traverse_spans())
    ext.root_spans[:] = [root for root in ext.root_spans if root.id not in gone]
    for span_id in gone:
        ext.spans.pop(span_id, None)
    for index in (ext.spans_search_by_name, ext.spans_search_by_tag):
        for key in list(index):
            kept = [span for span in index[key] if span.id not in gone]
            if kept:
                index[key] = kept
            else:
                del index[key]
    return len(gone)


class SpanPruner(SchedulerPlugin):
    """A scheduler plugin that runs :func:`prune_spans` every ``interval`` seconds.

    Parameters
    ----------
    keep_seconds : float, default 60
        How long a finished root span stays visible.
    interval : float, default 10
        Seconds between two prunings.
    """

    name = PRUNER_NAME
    idempotent = True

    def __init__(self, keep_seconds: float = 60.0, interval: float = 10.0) -> None:
        self.keep_seconds = keep_seconds
        self.interval = interval
        self.pruned = 0
        self._callback: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"keep_seconds": self.keep_seconds, "interval": self.interval}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    async def start(self, scheduler: Any) -> None:
        from tornado.ioloop import PeriodicCallback

        ext = scheduler.extensions.get("spans")
        if ext is not None and not all(hasattr(ext, name) for name in _ATTRIBUTES):
            logger.warning("adp: this distributed's spans extension is unknown; not pruning")
            return

        def prune() -> None:
            self.pruned += prune_spans(scheduler, keep_seconds=self.keep_seconds)

        self._callback = PeriodicCallback(prune, self.interval * 1000)
        self._callback.start()

    async def close(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

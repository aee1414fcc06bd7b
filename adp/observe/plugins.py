"""ADP's Dask scheduler plugin: Prometheus metrics and an audit record per submitted graph.

Install it on any scheduler with the preload hook::

    dask scheduler --preload adp.observe.plugins

(or the ``distributed.scheduler.preload`` config key, or
``LocalCluster(scheduler_kwargs={"preload": ["adp.observe.plugins"]})``), or on a running
scheduler with :func:`install`. Both are idempotent: the plugin is named ``"adp"`` and a second
registration is ignored.

The hooks do no I/O and nothing that grows with the data: ``update_graph`` counts the graph
and queues a reference to its task list; ``log_event`` adds the figures of ``adp-metrics``
events (sent by :func:`adp.observe.events.report` on workers and
:func:`~adp.observe.events.report_client` on clients) to in-memory counters. A background
``asyncio`` task started in ``start()`` writes the queued audit records every
``flush_interval`` seconds on a dedicated thread, and ``close()`` writes what is left (on
the event loop's own thread when the interpreter is already exiting and its thread pools
are gone, as when a script ends without closing its client).

Beside it, both install :class:`adp.observe.span_pruning.SpanPruner`, so a scheduler that
runs job after job does not keep every finished job's spans forever.

No worker plugin is needed: worker-side figures travel as events on each worker's existing
batched stream to the scheduler (see :mod:`adp.bench.plugin_overhead` for the measured cost), and
the counts stay exact without a flush delay on the workers.

Graph audits are best effort by necessity (a scheduler hook cannot refuse a graph without
blocking the event loop): a record that cannot be written is kept and retried on the next
flush (up to ``max_buffer`` records), and every failed attempt counts in
``adp_audit_write_failures_total``. Actions that must not run unaudited use
:func:`adp.observe.audit.audited` on the client side.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from distributed.diagnostics.plugin import SchedulerPlugin

from adp.observe.events import TOPIC
from adp.observe.metrics import MetricsState, bind, register_collector, unbind
from adp.observe.span_pruning import PRUNER_NAME, SpanPruner

if TYPE_CHECKING:
    from distributed import Client, Scheduler

    from adp.observe.audit import AuditLog

__all__ = ["PLUGIN_NAME", "AdpSchedulerPlugin", "dask_setup", "install"]

logger = logging.getLogger(__name__)

PLUGIN_NAME = "adp"
JOB_ANNOTATION = "adp_job_id"
"""Annotate tasks with ``dask.annotate(adp_job_id=...)`` to tie graph audits to a job."""

_MAX_PREFIXES = 50
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Submission:
    """What ``update_graph`` queues: references only, summarised on the writer thread."""

    when: float
    client: str
    tasks: list[Any]
    keys: Any
    job_ids: dict[Any, Any] | None
    stimulus_id: str


class AdpSchedulerPlugin(SchedulerPlugin):
    """Counts ADP's figures for ``/metrics`` and audits every graph submitted.

    Parameters
    ----------
    audit_url : str, optional
        SQLAlchemy URL of the audit log; ``None`` uses the scheduler's ``adp.audit.url``
        (then ``sqlite:///<adp.state-dir>/audit.db`` on the scheduler's machine).
    audit : bool, default True
        Write an audit record per graph; ``False`` keeps metrics only.
    flush_interval : float, default 0.5
        Seconds between background writes of queued audit records.
    max_buffer : int, default 10000
        Queued records kept while the audit database is unreachable; beyond that the
        oldest are dropped (and counted as write failures).
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(
        self,
        audit_url: str | None = None,
        *,
        audit: bool = True,
        flush_interval: float = 0.5,
        max_buffer: int = 10_000,
    ) -> None:
        self.audit_url = audit_url
        self.audit = audit
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self._init_runtime()

    def _init_runtime(self) -> None:
        self.metrics = MetricsState()
        self._pending: deque[_Submission] = deque()
        self._scheduler: Scheduler | None = None
        self._log: AuditLog | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._flush_lock: asyncio.Lock | None = None
        self._closed = False
        self._last_error = float("-inf")

    # Only configuration travels when a client registers the plugin.
    def __getstate__(self) -> dict[str, Any]:
        return {
            "audit_url": self.audit_url,
            "audit": self.audit,
            "flush_interval": self.flush_interval,
            "max_buffer": self.max_buffer,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, scheduler: Scheduler) -> None:
        """Register the metrics collector and start the background audit writer."""
        self._scheduler = scheduler
        register_collector()
        bind(scheduler, self.metrics)
        self._flush_lock = asyncio.Lock()
        if self.audit:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="adp-audit")
            await self._on_writer(self._open_log)
        # also without audit: notices when the plugin is unregistered
        self._task = asyncio.create_task(self._run(), name="adp-plugin")

    async def close(self) -> None:
        """Write the queued audit records, then release the database and executor."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            assert self._flush_lock is not None
            async with self._flush_lock:  # let a write in progress finish first
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        finally:
            if self._executor is not None:
                if self._log is not None:
                    await self._on_writer(self._log.close)
                self._executor.shutdown(wait=False)
            unbind(self.metrics)

    async def _on_writer(self, func: Callable[..., _T], *args: Any) -> _T:
        """Run ``func`` on the writer thread, or here when that thread is gone.

        A process that exits without closing its client closes the scheduler from an
        ``atexit`` hook, after the interpreter has shut its thread pools down: submitting
        then raises ``RuntimeError`` ("cannot schedule new futures after shutdown"), and
        the last records are written on the event loop's thread instead (nothing else runs
        on it any more).
        """
        assert self._executor is not None
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        except RuntimeError:  # the executor, or the interpreter, is shutting down
            return func(*args)
        return await future

    async def _run(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.flush_interval)
            scheduler = self._scheduler
            if scheduler is not None and scheduler.plugins.get(self.name) is not self:
                # unregistered: Scheduler.remove_plugin does not call close()
                await self.close()
                return
            try:
                await self.flush()
            except Exception:  # never let the writer die
                logger.exception("ADP audit flush failed")

    # -- hooks: in memory only ---------------------------------------------------------
    def update_graph(
        self,
        scheduler: Scheduler,
        *,
        client: str,
        keys: set[Any],
        tasks: list[Any],
        annotations: dict[str, dict[Any, Any]],
        priority: dict[Any, tuple[int | float, ...]],
        stimulus_id: str,
        **kwargs: Any,
    ) -> None:
        """Count the graph and queue its audit record (no I/O)."""
        self.metrics.inc("graphs_submitted")
        if not self.audit or self._closed:
            return
        if len(self._pending) >= self.max_buffer:
            self._pending.popleft()
            self.metrics.inc("audit_write_failures")
            logger.error("ADP audit queue full (%d); dropped the oldest graph", self.max_buffer)
        job_ids = annotations.get(JOB_ANNOTATION) if annotations else None
        self._pending.append(_Submission(time.time(), client, tasks, keys, job_ids, stimulus_id))

    def log_event(self, topic: str, msg: Any) -> None:
        """Add the figures of an ``adp-metrics`` event to the counters."""
        if topic == TOPIC:
            self.metrics.add_figures(msg)

    # -- background writing ------------------------------------------------------------
    async def flush(self) -> None:
        """Write the queued audit records now (on the writer thread)."""
        if not self._pending or self._executor is None or self._flush_lock is None:
            return
        async with self._flush_lock:
            batch = list(self._pending)
            self._pending.clear()
            written, unwritten = await self._on_writer(self._write, batch)
            self.metrics.inc("audit_records", written)
            if unwritten:
                self.metrics.inc("audit_write_failures")
                room = max(self.max_buffer - len(self._pending), 0)
                self._pending.extendleft(reversed(unwritten[:room]))

    def _open_log(self) -> AuditLog | None:
        if self._log is None:
            from adp.errors import AdpError
            from adp.observe.audit import AuditLog

            try:
                self._log = AuditLog(self.audit_url)
            except AdpError as exc:
                self._error("ADP audit log unavailable (will retry): %s", exc)
        return self._log

    def _error(self, message: str, *args: Any) -> None:
        """Log at most one error a minute while the audit database stays unavailable."""
        now = time.monotonic()
        if now - self._last_error >= 60:
            self._last_error = now
            logger.error(message, *args)
        else:
            logger.debug(message, *args)

    def _write(self, batch: list[_Submission]) -> tuple[int, list[_Submission]]:
        """Append one record per submission, in order; stop at the first failure."""
        from adp.errors import AdpError

        log = self._open_log()
        if log is None:
            return 0, batch
        address = self._scheduler.address if self._scheduler is not None else None
        for i, sub in enumerate(batch):
            try:
                log.append(**_graph_record(sub, address))
            except AdpError as exc:
                self._error("ADP audit record for a graph not written (will retry): %s", exc)
                return i, batch[i:]
        return len(batch), []


def _graph_record(sub: _Submission, address: str | None) -> dict[str, Any]:
    from dask.utils import key_split

    prefixes = Counter(key_split(key) for key in sub.tasks)
    details: dict[str, Any] = {
        "client": sub.client,
        "tasks": len(sub.tasks),
        "keys": len(sub.keys),
        "prefixes": dict(prefixes.most_common(_MAX_PREFIXES)),
        "submitted": datetime.fromtimestamp(sub.when, UTC).isoformat(timespec="microseconds"),
        "stimulus_id": sub.stimulus_id,
    }
    if len(prefixes) > _MAX_PREFIXES:
        details["prefixes_omitted"] = len(prefixes) - _MAX_PREFIXES
    job_ids = sorted({str(v) for v in sub.job_ids.values()}) if sub.job_ids else []
    if len(job_ids) > 1:
        details["job_ids"] = job_ids[:_MAX_PREFIXES]
    return {
        "event_type": "graph.submitted",
        "action": "submit-graph",
        "resource": address,
        "source": "scheduler",
        "identity": sub.client,
        "job_id": job_ids[0] if len(job_ids) == 1 else None,
        "details": details,
    }


def dask_setup(scheduler: Any) -> None:
    """Preload hook: ``dask scheduler --preload adp.observe.plugins`` installs the plugin.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        The scheduler being started; other servers (a worker preloading this module) are
        left alone with a warning.
    """
    from distributed import Scheduler

    if not isinstance(scheduler, Scheduler):
        logger.warning("adp.observe.plugins is a scheduler preload; ignored on %r", scheduler)
        return
    scheduler.add_plugin(AdpSchedulerPlugin(), name=PLUGIN_NAME, idempotent=True)
    scheduler.add_plugin(SpanPruner(), name=PRUNER_NAME, idempotent=True)


def install(client: Client, *, audit_url: str | None = None, audit: bool = True) -> Any:
    """Install ADP's scheduler plugin on the scheduler ``client`` is connected to.

    Idempotent: when a plugin named ``"adp"`` is already there (preloaded or installed
    before), nothing changes.

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    audit_url : str, optional
        Audit database URL; ``None`` lets the scheduler use its own ``adp.audit.url``.
    audit : bool, default True
        Audit every submitted graph; ``False`` installs metrics only.

    Returns
    -------
    None or awaitable
        An awaitable when ``client`` is asynchronous.
    """
    if client.asynchronous:
        return _install_async(client, audit_url, audit)
    client.register_plugin(SpanPruner())
    return client.register_plugin(AdpSchedulerPlugin(audit_url, audit=audit))


async def _install_async(client: Client, audit_url: str | None, audit: bool) -> Any:
    await client.register_plugin(SpanPruner())
    return await client.register_plugin(AdpSchedulerPlugin(audit_url, audit=audit))

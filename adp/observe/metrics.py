"""ADP's Prometheus metrics, served on the Dask scheduler's existing ``/metrics`` endpoint.

The scheduler plugin keeps one :class:`MetricsState` (plain numbers, updated on the event
loop). A single scrape-time collector, :class:`AdpCollector`, is registered once per process
in ``prometheus_client.REGISTRY`` (the registry the scheduler's ``/metrics`` handler serves)
and turns the state into metric families when Prometheus scrapes. Nothing is created per
job, so "Duplicated timeseries" cannot happen, and no metric carries a label: job ids,
users, keys and rows never become time series.

When several schedulers share one process (tests), the collector reports the state of the
scheduler whose ``/metrics`` is being served (distributed rebinds its own collectors to that
scheduler on each request; ADP reads which one it is), or zeros if that scheduler has no ADP
plugin. Scraped some other way (e.g. ``prometheus_client.start_http_server``), it reports the
most recently started plugin.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import sys
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from adp.observe.events import COUNTER_FIGURES, HISTOGRAM_FIGURES

__all__ = [
    "COUNTERS",
    "HISTOGRAMS",
    "AdpCollector",
    "MetricsState",
    "bind",
    "register_collector",
    "unbind",
]

SCHEDULER_COUNTERS: frozenset[str] = frozenset({"graphs_submitted"})

_HELP: dict[str, str] = {
    "jobs_started": "ADP jobs started.",
    "jobs_finished": "ADP jobs finished successfully.",
    "jobs_failed": "ADP jobs that failed.",
    "rows_read": "Rows read from sources.",
    "rows_scored": "Rows scored by detectors.",
    "anomalies_flagged": "Rows flagged as anomalies.",
    "bytes_read": "Bytes read from sources.",
    "fit_seconds": "Seconds spent fitting detectors.",
    "search_trials": "Model search trials run.",
    "audit_records": "Audit records written.",
    "audit_write_failures": "Audit records that could not be written.",
    "graphs_submitted": "Task graphs submitted to the scheduler by any client.",
    "partition_score_seconds": "Seconds to score one partition.",
    "stream_events": "Events taken from stream sources (dead letters included).",
    "stream_dead_letters": "Stream events sent to a dead-letter stream.",
    "stream_anomalies": "Stream events flagged as anomalies.",
    "stream_batches": "Stream micro-batches committed and acknowledged.",
    "stream_drift_alerts": "Score drift detected in a stream against the training scores.",
    "stream_batch_seconds": "Seconds from fetching a stream micro-batch to acknowledging it.",
    "stream_lag_seconds": "Age of a micro-batch's oldest event when its results are committed.",
}

COUNTERS: tuple[str, ...] = tuple(sorted(COUNTER_FIGURES | SCHEDULER_COUNTERS))
"""Counter figures; each is exposed as ``adp_<name>_total``."""

_SECONDS_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

HISTOGRAMS: dict[str, tuple[float, ...]] = {
    "partition_score_seconds": _SECONDS_BUCKETS,
    "stream_batch_seconds": _SECONDS_BUCKETS,
    # a stream that falls behind lags by minutes or hours, not seconds
    "stream_lag_seconds": (*_SECONDS_BUCKETS, 300.0, 900.0, 3600.0),
}
"""Histogram figures and their upper bucket bounds (``+Inf`` is implied)."""

assert set(HISTOGRAMS) == set(HISTOGRAM_FIGURES)
assert set(_HELP) == set(COUNTERS) | set(HISTOGRAMS)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # last slot: above every bound
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append((floatToGoString(bound), float(running)))
        return out


class MetricsState:
    """The numbers behind ADP's metrics for one scheduler; cheap to update.

    Updates come from the scheduler's event loop (plugin hooks and the background flush);
    a lock makes scrapes from another thread consistent.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self._histograms = {name: _Histogram(bounds) for name, bounds in HISTOGRAMS.items()}
        self.rejected = 0

    def inc(self, name: str, value: float = 1.0) -> None:
        """Add ``value`` to the counter ``name`` (one of :data:`COUNTERS`)."""
        with self._lock:
            self._counters[name] += value

    def add_figures(self, msg: Any) -> None:
        """Count one ``adp-metrics`` event; malformed events are counted in ``rejected``.

        Parameters
        ----------
        msg : Mapping[str, float]
            The event sent by :func:`adp.observe.events.report`; keys that are not figures
            (distributed adds ``worker``) are ignored.
        """
        if not isinstance(msg, Mapping):
            self.rejected += 1
            return
        with self._lock:
            for name, value in msg.items():
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    if name in COUNTER_FIGURES or name in HISTOGRAM_FIGURES:
                        self.rejected += 1
                    continue
                if name in COUNTER_FIGURES:
                    self._counters[name] += value
                elif name in HISTOGRAM_FIGURES:
                    self._histograms[name].observe(float(value))

    def value(self, name: str) -> float:
        """Return the current value of counter ``name`` (for tests and benchmarks)."""
        with self._lock:
            return self._counters[name]

    def families(self) -> list[Metric]:
        """Return the metric families for one scrape."""
        with self._lock:
            counters = dict(self._counters)
            histograms = {name: (h.cumulative(), h.sum) for name, h in self._histograms.items()}
        return _families(counters, histograms)


def _families(
    counters: Mapping[str, float],
    histograms: Mapping[str, tuple[list[tuple[str, float]], float]],
) -> list[Metric]:
    out: list[Metric] = []
    for name in COUNTERS:
        out.append(CounterMetricFamily(f"adp_{name}", _HELP[name], value=counters.get(name, 0.0)))
    for name, bounds in HISTOGRAMS.items():
        buckets, total = histograms.get(
            name, ([(floatToGoString(b), 0.0) for b in (*bounds, float("inf"))], 0.0)
        )
        out.append(
            HistogramMetricFamily(f"adp_{name}", _HELP[name], buckets=buckets, sum_value=total)
        )
    return out


_lock = threading.Lock()
_states: list[tuple[Any, MetricsState]] = []  # (scheduler, state), most recent last
_collector: AdpCollector | None = None
_registered_in: list[Any] = []
logger = logging.getLogger(__name__)


def bind(scheduler: Any, state: MetricsState) -> None:
    """Make ``state`` the one reported for ``scheduler``'s ``/metrics``."""
    with _lock:
        _states[:] = [(s, st) for s, st in _states if s is not scheduler]
        _states.append((scheduler, state))


def unbind(state: MetricsState) -> None:
    """Stop reporting ``state`` (its plugin closed)."""
    with _lock:
        _states[:] = [(s, st) for s, st in _states if st is not state]


def _scraped_scheduler() -> Any:
    """The scheduler whose ``/metrics`` handler is running now, or ``None``.

    distributed points its collectors at the scheduler serving the request just before it
    collects, on that scheduler's event loop; anything else (another registry, another
    thread) is not a dask scrape.
    """
    module = sys.modules.get("distributed.http.scheduler.prometheus.core")
    collectors = getattr(getattr(module, "PrometheusHandler", None), "_collectors", None)
    if not collectors:
        return None
    server = getattr(collectors[0], "server", None)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return None
    loop = getattr(getattr(server, "loop", None), "asyncio_loop", None)
    return server if loop is running else None


def _current_state() -> MetricsState | None:
    with _lock:
        if not _states:
            return None
        scraped = _scraped_scheduler()
        if scraped is None:
            return _states[-1][1]
        for scheduler, state in _states:
            if scheduler is scraped:
                return state
        return None  # the scraped scheduler has no ADP plugin (any more)


class AdpCollector:
    """A scrape-time ``prometheus_client`` collector for ADP's metric families."""

    def describe(self) -> list[Metric]:
        """Name the families without collecting (used by the registry's duplicate check)."""
        return _families({}, {})

    def collect(self) -> Iterator[Metric]:
        """Yield ADP's families with the current values (zeros before any plugin runs)."""
        state = _current_state()
        yield from (state.families() if state is not None else _families({}, {}))


def register_collector(registry: Any = None) -> AdpCollector:
    """Register the ADP collector once per process; later calls return the same one.

    Parameters
    ----------
    registry : prometheus_client.CollectorRegistry, optional
        Defaults to ``prometheus_client.REGISTRY``, which the scheduler's ``/metrics`` serves.

    Returns
    -------
    AdpCollector
        The process's collector.
    """
    global _collector
    from prometheus_client import REGISTRY

    target = REGISTRY if registry is None else registry
    with _lock:
        if _collector is None:
            _collector = AdpCollector()
        if any(r is target for r in _registered_in):
            return _collector
        try:
            target.register(_collector)
        except ValueError as exc:  # "Duplicated timeseries": another copy registered them
            if "Duplicated timeseries" not in str(exc):
                raise
            logger.warning("ADP metrics already registered by another collector: %s", exc)
        _registered_in.append(target)
        return _collector

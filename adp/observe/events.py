"""Report ADP's figures (rows scored, anomalies flagged, ...) to the scheduler's metrics.

Tasks call :func:`report` on workers; the client side (job runner, CLI) calls
:func:`report_client`. Both send one small event under the topic :data:`TOPIC` through
Dask's own event channel (``Worker.log_event`` rides the worker's batched stream to the
scheduler, ``Client.log_event`` is one round trip); the ADP scheduler plugin
(:mod:`adp.observe.plugins`) adds the figures to its counters. Without the plugin the event
is kept only in the scheduler's bounded event log, so reporting is always harmless.

This module is imported inside every scoring task: it imports nothing heavy, and
:func:`report` is a no-op (a dictionary lookup) outside a distributed worker, e.g. in a plain
process or under the threaded scheduler.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from typing import Any

from adp.errors import ConfigError

__all__ = [
    "COUNTER_FIGURES",
    "FIGURES",
    "HISTOGRAM_FIGURES",
    "TOPIC",
    "report",
    "report_client",
]

TOPIC = "adp-metrics"
"""The Dask event topic that carries ADP's figures."""

COUNTER_FIGURES: frozenset[str] = frozenset(
    {
        "jobs_started",
        "jobs_finished",
        "jobs_failed",
        "rows_read",
        "rows_scored",
        "anomalies_flagged",
        "bytes_read",
        "fit_seconds",
        "search_trials",
        "audit_records",
        "audit_write_failures",
        "stream_events",
        "stream_dead_letters",
        "stream_anomalies",
        "stream_batches",
        "stream_drift_alerts",
    }
)
"""Figures added to a counter ``adp_<name>_total``."""

HISTOGRAM_FIGURES: frozenset[str] = frozenset(
    {"partition_score_seconds", "stream_batch_seconds", "stream_lag_seconds"}
)
"""Figures observed, one value per report, by a histogram ``adp_<name>``."""

FIGURES: frozenset[str] = COUNTER_FIGURES | HISTOGRAM_FIGURES
"""Every figure name :func:`report` and :func:`report_client` accept."""


def _checked(figures: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in figures.items():
        if name not in FIGURES:
            raise ConfigError(
                f"unknown ADP figure {name!r}; use one of: {', '.join(sorted(FIGURES))}"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"ADP figure {name}={value!r} must be a finite number >= 0")
        out[name] = number
    return out


def report(**figures: float) -> None:
    """Send figures measured inside a task to the scheduler's ADP metrics.

    Parameters
    ----------
    **figures : float
        Names from :data:`FIGURES` and non-negative values, for example
        ``report(rows_scored=1000, anomalies_flagged=12, partition_score_seconds=0.3)``.
        Counter figures are added; ``partition_score_seconds`` is one histogram observation.

    Raises
    ------
    adp.errors.ConfigError
        For an unknown figure name or a negative or non-finite value, also outside a worker,
        so typos fail in unit tests run without a cluster.

    Notes
    -----
    Outside a distributed worker this does nothing else. Inside one it queues one event on
    the worker's batched stream (no I/O in the calling thread; ``adp bench plugins`` measured
    25-90 us per call on a busy 2-core machine, against milliseconds per partition). A task
    that is retried reports again: the counters count work done.
    """
    msg = _checked(figures)
    if not msg or "distributed.worker" not in sys.modules:
        return
    from distributed.worker import get_worker

    try:
        worker = get_worker()
    except ValueError:  # not running inside a worker's task
        return
    worker.log_event(TOPIC, msg)


def report_client(client: Any, **figures: float) -> Any:
    """Send client-side figures (jobs started/finished/failed, fit seconds, rows read).

    Parameters
    ----------
    client : distributed.Client or None
        The client connected to the scheduler whose metrics should count the figures.
        ``None`` makes this a validated no-op (local runs without a cluster).
    **figures : float
        As for :func:`report`, e.g. ``report_client(client, jobs_started=1)``.

    Returns
    -------
    None or awaitable
        What ``client.log_event`` returns: ``None`` for a synchronous client, an awaitable
        for an asynchronous one.

    Raises
    ------
    adp.errors.ConfigError
        For an unknown figure name or a value that is not a finite number >= 0.
    """
    msg = _checked(figures)
    if client is None or not msg:
        return None
    return client.log_event(TOPIC, msg)

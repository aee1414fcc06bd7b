"""A scheduler that goes away mid-job: one error naming its address, at once.

When the scheduler dies, distributed's client cancels every future it holds
(``reason="scheduler-connection-lost"``) and tries to reconnect for
``distributed.comm.timeouts.connect`` (30 s by default) before giving up with a
``CommClosedError``. A job cannot resume on a new scheduler anyway (its futures are gone),
so :func:`lost_scheduler_is_an_error` turns the first sign of the loss into
:class:`SchedulerLostError`, and :func:`scheduler_lost` lets the caller skip the calls that
would wait out the reconnection (metrics, cancelling).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from adp.errors import AdpError

__all__ = [
    "SchedulerLostError",
    "close_client",
    "lost_scheduler_is_an_error",
    "scheduler_address",
    "scheduler_lost",
]

_LOST_REASON = "scheduler-connection-lost"


class SchedulerLostError(AdpError, ConnectionError):
    """The connection to the job's Dask scheduler was lost; the message names its address."""


def scheduler_address(client: Any) -> str:
    """The address of the scheduler ``client`` talks to (``"unknown"`` when it has none)."""
    scheduler = getattr(client, "scheduler", None)
    return str(getattr(scheduler, "address", None) or "unknown")


def scheduler_lost(client: Any, exc: BaseException | None = None) -> bool:
    """Whether ``client`` has lost its scheduler (or ``exc`` says so).

    Parameters
    ----------
    client : distributed.Client
        The job's client.
    exc : BaseException, optional
        The exception that stopped the job, if any.
    """
    from distributed.client import FutureCancelledError
    from distributed.comm import CommClosedError

    if getattr(client, "status", "running") in ("connecting", "closing", "closed", "failed"):
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, CommClosedError):
            return True
        if isinstance(exc, FutureCancelledError) and exc.reason == _LOST_REASON:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class _CancelledReconnection(logging.Filter):
    """Drops the traceback distributed logs when closing a client cancels its attempt to
    reconnect to a lost scheduler (a ``CancelledError`` in ``Client._reconnect``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


_QUIET = _CancelledReconnection()


def close_client(client: Any, *, timeout: float = 10.0) -> None:
    """Close ``client``; when its scheduler is lost, at once and without the traceback of
    the reconnection that closing cancels.

    Parameters
    ----------
    client : distributed.Client
        The client to close.
    timeout : float, default 10
        Seconds to wait for a client whose scheduler is lost to close.
    """
    if not scheduler_lost(client):
        client.close()
        return
    logging.getLogger("distributed.client").addFilter(_QUIET)
    with contextlib.suppress(Exception):
        client.close(timeout=timeout)


@contextlib.contextmanager
def lost_scheduler_is_an_error(client: Any) -> Iterator[None]:
    """Raise :class:`SchedulerLostError` for an error inside that comes from losing the
    scheduler of ``client``; other errors pass unchanged.

    Raises
    ------
    SchedulerLostError
        Naming the scheduler's address and what to check.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, SchedulerLostError) or not scheduler_lost(client, exc):
            raise
        raise SchedulerLostError(
            f"lost the connection to the Dask scheduler at {scheduler_address(client)}: "
            "the job stopped and its output is unchanged; check that the scheduler is "
            "running and reachable, then rerun"
        ) from exc

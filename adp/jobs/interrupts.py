"""Stopping a job cleanly on SIGINT, SIGTERM and SIGHUP.

A closed laptop (SIGHUP), Kubernetes stopping a pod (SIGTERM) and Ctrl-C (SIGINT) all end a
job the same way: :class:`InterruptGuard`, entered by :func:`adp.jobs.runner.run_job` in the
main thread, turns the signal into :class:`JobInterrupted` (a :class:`KeyboardInterrupt`, so
Dask's blocking calls stop waiting exactly as for Ctrl-C, and no ``except Exception`` swallows
it). The runner then cancels the job's futures (:func:`cancel_job_work`), its sink removes
the staging folder, the audit trail records the outcome ``interrupted`` with the signal's
name, the failure is counted, and ``adp run`` prints one line and exits with ``128 + signum``.

A signal that arrives while the guard is :meth:`~InterruptGuard.deferred` (the commit) waits
for the end of that block, and signals after the first one are ignored until the guard exits,
so that the cleanup itself is not interrupted half-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Collection, Iterator
from types import FrameType
from typing import Any

__all__ = [
    "HANDLED_SIGNALS",
    "InterruptGuard",
    "JobInterrupted",
    "cancel_job_work",
    "quiet_cancelled_gathers",
]

logger = logging.getLogger(__name__)

HANDLED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals that stop a job cleanly (SIGHUP only where the platform has it)."""


class JobInterrupted(KeyboardInterrupt):
    """A job was stopped by a signal; its output location is unchanged.

    A :class:`KeyboardInterrupt` (not an :class:`Exception`): generic error handlers let it
    through, and Dask's blocking calls cancel what they wait for, as on Ctrl-C.

    Parameters
    ----------
    signum : int
        The signal's number.
    committed : bool, default False
        The signal arrived during the commit, which was let finish: the output is the
        job's new one.

    Attributes
    ----------
    signal_name : str
        ``"SIGTERM"``, ``"SIGHUP"``, ``"SIGINT"``, ...
    exit_code : int
        ``128 + signum``, the shell's convention for a process ended by a signal.
    """

    def __init__(self, signum: int, *, committed: bool = False) -> None:
        self.signum = int(signum)
        self.committed = committed
        try:
            self.signal_name = signal.Signals(self.signum).name
        except ValueError:
            self.signal_name = f"signal {self.signum}"
        self.exit_code = 128 + self.signum
        outcome = (
            "the job had already committed its output" if committed else "the output is unchanged"
        )
        super().__init__(f"interrupted by {self.signal_name}; {outcome}")


class JobCancelled(KeyboardInterrupt):
    """A job was cancelled by a person (through the service); its output is unchanged.

    Like :class:`JobInterrupted` it is a :class:`KeyboardInterrupt`, so the runner stops it
    the same way (futures cancelled, staging removed); its audit outcome is ``cancelled``.

    Parameters
    ----------
    by : str
        Who cancelled it.
    """

    outcome = "cancelled"
    signal_name = "cancel"
    exit_code = 130

    def __init__(self, by: str) -> None:
        self.by = by
        super().__init__(f"cancelled by {by}; the output is unchanged")


class InterruptGuard:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`JobInterrupted` while it is entered.

    Handlers are installed only in the main thread (elsewhere Python allows none: the
    guard then does nothing) and the previous ones are restored on exit.

    Parameters
    ----------
    signals : collection of int, optional
        The signals to handle; default :data:`HANDLED_SIGNALS`.

    Attributes
    ----------
    received : int or None
        The first signal received, if any.
    """

    def __init__(self, signals: Collection[int] | None = None) -> None:
        self.signals = tuple(HANDLED_SIGNALS if signals is None else signals)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._deferring = 0
        self._raised = False

    @property
    def active(self) -> bool:
        """Whether the handlers are installed (entered in the main thread)."""
        return bool(self._previous)

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            logger.debug("signal %d ignored: the job is already stopping", signum)
            return  # already stopping: let the cleanup finish
        self.received = signum
        if self._deferring:
            return
        self._raised = True
        raise JobInterrupted(signum)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block a signal does not interrupt: one that arrives waits for its end.

        Raises
        ------
        JobInterrupted
            At the end of the block, when a signal arrived during it (``committed=True``).
        """
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if self.received is not None and not self._deferring and not self._raised:
            self._raised = True
            raise JobInterrupted(self.received, committed=True)


def quiet_cancelled_gathers(client: Any) -> None:
    """Keep the event loop of ``client`` from printing "Task exception was never retrieved
    ... AllExit" for each wait that an interrupted ``gather`` left behind.

    ``AllExit`` is distributed's internal signal that a gather can stop early; the waits
    raise it, unobserved, once the futures they wait for are cancelled. Every other
    exception still reaches the loop's previous handler.
    """
    from distributed.client import AllExit

    loop = getattr(getattr(client, "loop", None), "asyncio_loop", None)
    if loop is None or getattr(loop, "_adp_quiet_allexit", False):
        return
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), AllExit):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    loop._adp_quiet_allexit = True


def _running(keys: Collection[Any] | None, dask_worker: Any = None) -> int:
    """On a worker: how many of ``keys`` (``None``: of all tasks) still occupy a thread,
    cancelled ones included."""
    running = dask_worker.state.all_running_tasks
    if keys is None:
        return len(running)
    wanted = set(keys)
    return sum(1 for ts in running if ts.key in wanted)


def cancel_job_work(client: Any, keys: Collection[Any], *, wait: float = 20.0) -> int:
    """Cancel the job's futures and wait until no worker still runs one of them.

    A cancelled task that is already running cannot be stopped: it runs to its end, and
    may write a staged file. Waiting for it keeps the staging folder from being recreated
    after the job removed it.

    Parameters
    ----------
    client : distributed.Client
        The job's client.
    keys : collection
        The keys of the job's futures (those the client holds that it did not hold when
        the job started).
    wait : float, default 20
        Seconds to wait at most for running tasks to end.

    Returns
    -------
    int
        How many futures were cancelled.
    """
    from distributed import Future

    from adp.detect.shipping import shipped_keys

    if not keys or getattr(client, "status", None) != "running":
        return 0
    # a shipped model (adp.detect.shipping) is the model's, not the job's: cancelling it
    # races the model cache's own release on the scheduler (an AssertionError there)
    models = set(shipped_keys(client))
    futures: list[Any] = [
        Future(key, client)
        for key in keys
        if key in client.futures and key not in models and not str(key).startswith("adp-model-")
    ]
    if not futures:
        return 0
    quiet_cancelled_gathers(client)
    try:
        client.cancel(futures, reason="adp-job-stopped", msg="the ADP job was stopped")
    except Exception as exc:  # the scheduler may be gone too: nothing left to cancel
        logger.debug("could not cancel the job's futures: %s", exc)
        return 0
    # A cancelled task upstream of the futures (a partition being scored) may run on, but
    # what depends on it (the staged write) is released and never starts: only the
    # futures' own tasks can still write. A cluster this process started (and is about to
    # close) is waited for entirely, or its workers log each task cut short at closing.
    names = None if getattr(client, "cluster", None) is not None else [f.key for f in futures]
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and client.status == "running":
        try:
            running = client.run(_running, names, on_error="return")
        except Exception as exc:  # a worker or the scheduler went away: stop waiting
            logger.debug("could not ask the workers about cancelled tasks: %s", exc)
            break
        if not any(isinstance(n, int) and n for n in running.values()):
            break
        time.sleep(0.1)
    return len(futures)

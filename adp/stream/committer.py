"""Complete a stream's micro-batches in order, on a thread of their own.

The stream loop (:mod:`adp.stream.runner`) fetches and submits batches; an
:class:`OrderedCommitter` completes them (waits for the scores, commits the results,
acknowledges the messages) one at a time in the order they were put, on its own thread.
While it waits on the sinks and the broker, the loop is already fetching and decoding the
next batches: the broker's round trips for the commit and for the fetch overlap instead of
taking turns.

At most ``limit`` batches are put and not yet completed (:meth:`wait_for_room` blocks the
loop until one is completed): that is the stream's backpressure. After a completion fails,
no later batch is completed (their messages stay unacknowledged, so the broker delivers
them again) and the error is raised to the loop by the next call.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["OrderedCommitter"]

B = TypeVar("B")


class OrderedCommitter(Generic[B]):
    """Calls ``complete(batch)`` for each batch put, in order, on one thread.

    Parameters
    ----------
    complete : callable
        Completes one batch (it may block, e.g. on the batch's scores).
    discard : callable
        Called instead of ``complete`` for a batch left over after a failure or an abort
        (to release what it holds); must not raise.
    limit : int
        The most batches put and not yet completed.
    name : str
        The thread's name.
    """

    def __init__(
        self,
        complete: Callable[[B], Any],
        discard: Callable[[B], Any],
        limit: int,
        name: str = "adp-stream-commit",
    ) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self._complete, self._discard, self._limit = complete, discard, int(limit)
        self._queue: deque[B] = deque()
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._abort = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Batches put and not yet completed (the one being completed included)."""
        with self._cond:
            return len(self._queue)

    def put(self, batch: B) -> None:
        """Queue ``batch`` after the batches already put (see :meth:`wait_for_room`)."""
        with self._cond:
            self._raise()
            if self._closed:
                raise RuntimeError("the committer is closed")
            self._queue.append(batch)
            self._cond.notify_all()

    def wait_for_room(self, timeout: float | None = None) -> bool:
        """Wait until fewer than ``limit`` batches are pending; ``False`` on timeout.
        Raises the error of a failed completion."""
        with self._cond:
            room = self._cond.wait_for(
                lambda: len(self._queue) < self._limit or self._error is not None, timeout
            )
            self._raise()
            return bool(room)

    def check(self) -> None:
        """Raise the error of a failed completion, if any."""
        with self._cond:
            self._raise()

    def drain(self) -> None:
        """Wait until every batch put is completed, then stop the thread. Raises the error
        of a failed completion."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._queue)
        self._thread.join()
        self.check()

    def abort(self, timeout: float = 30.0) -> None:
        """Complete nothing more: the batch being completed finishes, the others are
        discarded. Waits at most ``timeout`` seconds for the thread."""
        with self._cond:
            self._abort = self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def aborted(self) -> bool:
        """Whether :meth:`abort` was called (a long wait in ``complete`` may check it)."""
        return self._abort

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closed)
                if not self._queue:
                    return
                batch = self._queue[0]
                skip = self._abort or self._error is not None
            try:
                if skip:
                    self._discard(batch)
                else:
                    self._complete(batch)
            except BaseException as exc:  # handed to the loop, which raises it
                with self._cond:
                    if self._error is None:
                        self._error = exc
            finally:
                with self._cond:
                    self._queue.popleft()
                    self._cond.notify_all()

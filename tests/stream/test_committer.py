"""The stream's commit thread: in order, bounded, and nothing committed after a failure."""

from __future__ import annotations

import threading
import time

import pytest

from adp.stream.committer import OrderedCommitter


class _Log:
    def __init__(self, gate: threading.Event | None = None, fail_on: int | None = None) -> None:
        self.completed: list[int] = []
        self.discarded: list[int] = []
        self.threads: set[str] = set()
        self.gate, self.fail_on = gate, fail_on

    def complete(self, batch: int) -> None:
        self.threads.add(threading.current_thread().name)
        if self.gate is not None:
            assert self.gate.wait(10)
        if batch == self.fail_on:
            raise OSError(f"sink down at batch {batch}")
        self.completed.append(batch)

    def discard(self, batch: int) -> None:
        self.discarded.append(batch)


def test_batches_complete_in_the_order_put_on_a_thread_of_their_own() -> None:
    log = _Log()
    committer = OrderedCommitter(log.complete, log.discard, limit=100)
    for batch in range(50):
        committer.put(batch)
    committer.drain()
    assert log.completed == list(range(50))
    assert log.discarded == []
    assert log.threads == {"adp-stream-commit"}
    assert committer.pending == 0


def test_the_limit_holds_the_loop_back_until_a_batch_is_completed() -> None:
    gate = threading.Event()
    log = _Log(gate)
    committer = OrderedCommitter(log.complete, log.discard, limit=2)
    committer.put(1)
    assert committer.wait_for_room(0.05)  # one pending: room for another
    committer.put(2)
    assert not committer.wait_for_room(0.1)  # two pending: full
    assert committer.pending == 2
    gate.set()
    assert committer.wait_for_room(5)
    committer.drain()
    assert log.completed == [1, 2]


def test_after_a_failure_no_later_batch_is_completed_and_the_error_reaches_the_loop() -> None:
    gate = threading.Event()
    log = _Log(gate, fail_on=2)
    committer = OrderedCommitter(log.complete, log.discard, limit=10)
    for batch in range(1, 6):
        committer.put(batch)
    gate.set()
    deadline = time.monotonic() + 10
    while committer.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log.completed == [1]  # batch 2 failed; 3-5 were never committed
    assert log.discarded == [3, 4, 5]
    with pytest.raises(OSError, match="sink down at batch 2"):
        committer.check()
    with pytest.raises(OSError, match="sink down"):
        committer.put(6)
    with pytest.raises(OSError, match="sink down"):
        committer.wait_for_room(1)
    with pytest.raises(OSError, match="sink down"):
        committer.drain()


def test_abort_finishes_the_current_batch_and_discards_the_rest() -> None:
    gate = threading.Event()
    log = _Log(gate)
    committer = OrderedCommitter(log.complete, log.discard, limit=10)
    for batch in range(4):
        committer.put(batch)
    deadline = time.monotonic() + 10
    while not log.threads and time.monotonic() < deadline:  # batch 0 held at the gate
        time.sleep(0.01)
    releaser = threading.Timer(0.1, gate.set)
    releaser.start()
    committer.abort(timeout=10)
    assert committer.aborted
    assert log.completed == [0]
    assert log.discarded == [1, 2, 3]
    with pytest.raises(RuntimeError, match="closed"):
        committer.put(9)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        OrderedCommitter(print, print, limit=0)

"""The stream loop: fetch, decode, score on the cluster, threshold, commit, acknowledge.

:class:`StreamRunner` runs on two threads (and sends its metrics from a third, so that a
scheduler round trip never holds up a batch):

1. the loop takes a micro-batch: a dead consumer's pending messages when there are any
   (:meth:`Broker.reclaim`), else new ones: at most ``max_events``, gathered for at most
   ``max_wait_ms`` after the first one arrives. Batch sizes adapt to the load: a consumer
   that keeps up sends what came within ``max_wait_ms``; one that lags finds ``max_events``
   waiting and sends full batches at once;
2. it submits the batch to the cluster as one plain task (``client.submit``, no dask
   graph): the payloads travel as one object, and the worker decodes them and scores the
   good rows (:func:`adp.stream.scoring.decode_and_score`, with the fitted detector
   scattered to the workers once). With per-key windows (:mod:`adp.stream.windows`), the
   loop decodes the batch and adds the window features first (they depend on the order of
   events), and the worker scores the rows. At most ``max_in_flight`` batches are in
   flight, and while that many are, nothing more is fetched: the broker holds the backlog
   (lag grows), the consumer's memory does not;
3. the commit thread (:class:`adp.stream.committer.OrderedCommitter`) completes the
   batches in fetch order: flags the scores against the threshold as it stood, writes
   every sink (each commits), publishes the bad messages to the dead-letter stream with
   their reasons, saves the window state the batch left, and only then acknowledges the
   batch's messages; then the threshold learns from the batch. Meanwhile the loop fetches
   the next batches: the broker's round trips for a commit and a fetch overlap. A failed
   commit stops the run; no later batch is committed or acknowledged.

A consumer killed at any point loses nothing: what it fetched and did not acknowledge is
delivered again (reclaimed), and the sinks, idempotent by message id, keep one result per
message. :meth:`StreamRunner.stop` (SIGTERM, SIGINT) stops fetching; the batches in flight
are completed and acknowledged before :meth:`StreamRunner.run` returns. Brokers are used
from both threads: their methods must be thread-safe.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask.config
import numpy as np
import pandas as pd

from adp.errors import AdpError, one_line
from adp.observe.events import report_client
from adp.stream.brokers.protocol import Broker, Message
from adp.stream.committer import OrderedCommitter
from adp.stream.decode import DeadLetter, dead_letter_payload
from adp.stream.drift import DriftCheck, DriftMonitor
from adp.stream.model import StreamModel
from adp.stream.results import batch_results
from adp.stream.run_state import Stopper, StreamStats
from adp.stream.scoring import Payloads, Scored, decode_and_score, score_rows, warm_up
from adp.stream.sinks import Sink
from adp.stream.thresholds import StreamThreshold
from adp.stream.windows import Windows

__all__ = ["AuditHook", "DriftHook", "Stopper", "StreamRunner", "StreamStats"]

logger = logging.getLogger(__name__)

#: ``(event_type, action, details)``: appends one audit record (raising when it cannot).
AuditHook = Callable[[str, str, dict[str, Any]], None]
#: Called once each time drift is found (e.g. to request a refit).
DriftHook = Callable[[DriftCheck], object]


@dataclass
class _Batch:
    messages: list[Message]
    future: Any
    fetched_at: float
    ids: set[str] = field(default_factory=set)
    window_states: dict[str, bytes] = field(default_factory=dict)
    scored: threading.Event = field(default_factory=threading.Event)


def _oldest(messages: Sequence[Message]) -> float | None:
    stamps = [m.timestamp for m in messages if m.timestamp is not None]
    return min(stamps) if stamps else None


class StreamRunner:
    """Consume ``broker``, score on ``client``'s cluster, write ``sinks``, acknowledge.

    Parameters
    ----------
    broker : Broker
        The source (and the dead-letter stream's broker).
    client : distributed.Client
        Where batches are scored.
    model : StreamModel
        The fitted detector (scattered to the workers once) and its reference.
    threshold : StreamThreshold
        Flags the scores; adaptive ones learn from each batch.
    sinks : sequence of Sink
        Every batch is committed to each, in order, before it is acknowledged.
    dead_letter : str
        The dead-letter stream on ``broker``.
    key : sequence of str
        Event fields carried into the results.
    max_events, max_wait_ms, max_in_flight : int
        Micro-batching (see :class:`adp.stream.spec.BatchSpec`).
    source : str
        The source as shown in dead letters (no password).
    drift : DriftMonitor, optional
        Checks the scores for drift.
    audit : AuditHook, optional
        Writes the threshold-change and drift records.
    threshold_audit : tuple of float
        ``(change, seconds)``: an adaptive threshold's move is audited when it moved by
        more than ``change`` (relative) since the last audited value, at most every
        ``seconds``.
    stopper : Stopper, optional
        Shared with whoever stops the run.
    windows : Windows, optional
        Per-key windows: their features are added to each event, their state saved with
        each batch's commit.
    on_drift : callable, optional
        Called with the check each time drift is found (after its audit record).
    """

    def __init__(
        self,
        broker: Broker,
        client: Any,
        model: StreamModel,
        threshold: StreamThreshold,
        sinks: Sequence[Sink],
        dead_letter: str,
        *,
        key: Sequence[str] = (),
        max_events: int = 1000,
        max_wait_ms: int = 100,
        max_in_flight: int = 4,
        source: str = "",
        drift: DriftMonitor | None = None,
        audit: AuditHook | None = None,
        threshold_audit: tuple[float, float] = (0.1, 60.0),
        stopper: Stopper | None = None,
        windows: Windows | None = None,
        on_drift: DriftHook | None = None,
    ) -> None:
        self.broker, self.client, self.model = broker, client, model
        self.threshold, self.sinks = threshold, list(sinks)
        self.dead_letter, self.key = dead_letter, list(key)
        self.max_events, self.max_wait_ms = int(max_events), int(max_wait_ms)
        self.max_in_flight = int(max_in_flight)
        self.source, self.drift, self.audit = source, drift, audit
        self.stopper = stopper if stopper is not None else Stopper()
        self.windows, self.on_drift = windows, on_drift
        self._committer: OrderedCommitter[_Batch] | None = None
        self._inflight_ids: set[str] = set()
        self._ids_lock = threading.Lock()
        self._audited_threshold = threshold.value
        self._audited_at = time.monotonic()
        self._audit_change, self._audit_seconds = threshold_audit
        self.stats = StreamStats(threshold=threshold.value)
        self._reporter: ThreadPoolExecutor | None = None

    # -- control ---------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Stop fetching; the batches in flight are completed and acknowledged."""
        self.stopper.stop(reason)

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self.stopper.stopping

    @property
    def in_flight(self) -> int:
        """Batches submitted and not yet completed."""
        return self._committer.pending if self._committer is not None else 0

    # -- the loop --------------------------------------------------------------------

    def run(self, *, max_events: int | None = None, until_idle: float | None = None) -> StreamStats:
        """Consume until stopped.

        Parameters
        ----------
        max_events : int, optional
            Stop fetching once this many messages were taken (the last batch may pass it).
        until_idle : float, optional
            Stop after this many seconds with nothing to fetch and nothing in flight.

        Returns
        -------
        StreamStats
        """
        started = time.monotonic()
        detector = self.client.scatter(self.model.detector, broadcast=True, hash=False)
        committer = OrderedCommitter(self._complete, self._release, self.max_in_flight)
        self._committer = committer
        idle_since = time.monotonic()
        try:
            self._warm_up(detector)
            while True:
                committer.check()
                if max_events is not None and self.stats.events >= max_events:
                    self.stop("max_events")
                if self.stopper.stopping:
                    break
                if not committer.wait_for_room(self.max_wait_ms / 1000.0):
                    continue  # backpressure: max_in_flight batches are being scored
                messages = self._take()
                if messages:
                    idle_since = time.monotonic()
                    self._submit(messages, detector)
                elif (
                    until_idle is not None
                    and not committer.pending
                    and time.monotonic() - idle_since >= until_idle
                ):
                    self.stop("idle")
            committer.drain()  # stopping: finish what is in flight, acknowledge it
        except BaseException:
            committer.abort()  # what is in flight stays unacknowledged: delivered again
            raise
        finally:
            detector.release()
            if self._reporter is not None:  # every figure sent before run returns
                self._reporter.shutdown(wait=True)
                self._reporter = None
            self.stats.seconds = time.monotonic() - started
            self.stats.stopped_by = self.stopper.reason
        return self.stats

    def _warm_up(self, detector: Any) -> None:
        """Score one row on every worker before taking any event: the first scoring in a
        worker process loads the scattered model and compiles its kernels (seconds), which
        would otherwise hold up the first batches while events pile up."""
        workers = list(self.client.scheduler_info().get("workers", {}))
        futures = [
            self.client.submit(warm_up, detector, workers=[w], allow_other_workers=True, pure=False)
            for w in workers
        ]
        try:
            self.client.gather(futures)
        finally:
            for future in futures:
                future.release()

    def _take(self) -> list[Message]:
        room = self.max_events
        reclaimed = self.broker.reclaim(room)
        with self._ids_lock:
            reclaimed = [m for m in reclaimed if m.id not in self._inflight_ids]
        if reclaimed:
            self.stats.reclaimed += len(reclaimed)
            return reclaimed
        messages = self.broker.fetch(room, self.max_wait_ms)
        if not messages:
            return messages
        # fill the batch for up to max_wait_ms after its first event: fewer, larger batches
        # (each costs a task and a commit) at the price of that much latency
        deadline = time.monotonic() + self.max_wait_ms / 1000.0
        while len(messages) < room and not self.stopper.stopping:
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0:
                break
            more = self.broker.fetch(room - len(messages), left)
            if not more:
                break  # nothing came in the time left
            messages += more
        return messages

    def _submit(self, messages: list[Message], detector: Any) -> None:
        self.stats.events += len(messages)
        task_key = f"adp-stream-score-{uuid.uuid4().hex}"
        states: dict[str, bytes] = {}
        if self.windows is not None:  # decoded here: windows follow the order of events
            rows, states = self.windows.prepare(messages, self.key)
            task: tuple[Any, ...] = (score_rows, rows)
        else:
            task = (decode_and_score, Payloads([m.data for m in messages]))
        # The batch travels in its task on purpose (one hop through the scheduler, which
        # does not parse it): dask's warning about large graphs would fire for every batch
        # of tens of thousands of events.
        with dask.config.set({"distributed.admin.large-graph-warning-threshold": "2GiB"}):
            future = self.client.submit(*task, detector, self.key, key=task_key, pure=False)
        ids = {m.id for m in messages}
        batch = _Batch(messages, future, time.monotonic(), ids, states)
        future.add_done_callback(lambda _: batch.scored.set())
        with self._ids_lock:
            self._inflight_ids |= ids
        assert self._committer is not None
        try:
            self._committer.put(batch)
        except BaseException:  # a commit failed meanwhile: this batch is never committed
            self._release(batch)
            raise
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._committer.pending)

    def _send_dead(self, letters: list[DeadLetter]) -> None:
        """Publish dead letters (their acknowledgement is the caller's)."""
        items = [(d.message.id, dead_letter_payload(d, self.source)) for d in letters]
        self.broker.publish(self.dead_letter, items)
        self.stats.dead_letters += len(letters)

    def _complete(self, batch: _Batch) -> None:
        """Commit and acknowledge one batch once it is scored (on the commit thread)."""
        try:
            while not batch.scored.wait(0.25):
                if self._committer is None or self._committer.aborted:
                    return  # the run failed: left unacknowledged, delivered again
            try:
                scored: Scored = batch.future.result()
            except AdpError as exc:  # the data at fault, though it decoded
                reason = f"scoring failed: {one_line(str(exc), 300)}"
                self._send_dead([DeadLetter(m, reason) for m in batch.messages])
                self._save_windows(batch)
                self.broker.ack([m.id for m in batch.messages])
                self._report(stream_dead_letters=len(batch.messages))
                return
            self._commit(batch, scored)
        finally:
            self._release(batch)

    def _release(self, batch: _Batch) -> None:
        """Forget a batch (completed, or left unacknowledged after a failure)."""
        with self._ids_lock:
            self._inflight_ids -= batch.ids
        batch.future.release()

    def _commit(self, batch: _Batch, scored: Scored) -> None:
        value = self.threshold.value
        results, letters = batch_results(batch.messages, scored, self.key, value, self.model.ref)
        if len(results):
            for sink in self.sinks:
                sink.write(results)
        if letters:
            self._send_dead(letters)
        self._save_windows(batch)  # after the results: see adp.stream.windows
        self.broker.ack([m.id for m in batch.messages])  # only now: everything is committed
        scores = results["score"].to_numpy()
        flags = results["is_anomaly"].to_numpy()
        self.threshold.update(scores, flags)  # after the commit: a failed batch teaches nothing
        self._account(batch, results, scores, flags, len(letters))

    def _save_windows(self, batch: _Batch) -> None:
        if self.windows is not None:
            self.windows.save(batch.window_states)

    def _account(
        self,
        batch: _Batch,
        results: pd.DataFrame,
        scores: np.ndarray,
        flags: np.ndarray,
        dead: int,
    ) -> None:
        now = time.monotonic()
        anomalies = int(flags.sum())
        self.stats.results += len(results)
        self.stats.anomalies += anomalies
        self.stats.batches += 1
        self.stats.threshold = self.threshold.value
        figures: dict[str, float] = {
            "stream_events": len(batch.messages),
            "stream_dead_letters": dead,
            "stream_anomalies": anomalies,
            "stream_batches": 1,
            "stream_batch_seconds": now - batch.fetched_at,
        }
        oldest = _oldest(batch.messages)
        if oldest is not None:
            figures["stream_lag_seconds"] = max(0.0, time.time() - oldest)
        self._check_drift(scores, figures)
        self._report(**figures)
        self._audit_threshold(now)

    def _check_drift(self, scores: np.ndarray, figures: dict[str, float]) -> None:
        if self.drift is None:
            return
        was = self.drift.drifted
        check = self.drift.observe(scores)
        if check is None or check.drifted == was:
            return
        if check.drifted:
            self.stats.drift_alerts += 1
            figures["stream_drift_alerts"] = 1
        self._record("stream.drift", "drift" if check.drifted else "recovered", _drift(check))
        if check.drifted and self.on_drift is not None:
            self.on_drift(check)

    def _audit_threshold(self, now: float) -> None:
        value, last = self.threshold.value, self._audited_threshold
        if value == last or now - self._audited_at < self._audit_seconds:
            return
        moved = not (math.isfinite(value) and math.isfinite(last))
        if not moved:
            moved = abs(value - last) > self._audit_change * max(abs(last), 1e-12)
        if moved:
            details = {"kind": self.threshold.kind, "from": _finite(last), "to": _finite(value)}
            self._record("stream.threshold", "change", details)
            self._audited_threshold, self._audited_at = value, now

    def _record(self, event_type: str, action: str, details: dict[str, Any]) -> None:
        if self.audit is not None:
            self.audit(event_type, action, details)

    def _report(self, **figures: float) -> None:
        """Send figures to the scheduler's metrics from the metrics thread (one round trip
        each: the loop does not wait for it)."""
        if self._reporter is None:
            self._reporter = ThreadPoolExecutor(1, thread_name_prefix="adp-stream-metrics")
        self._reporter.submit(_send_figures, self.client, figures)


def _send_figures(client: Any, figures: dict[str, float]) -> None:
    try:
        report_client(client, **figures)
    except Exception:  # metrics never stop the stream
        logger.debug("could not report stream figures", exc_info=True)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _drift(check: DriftCheck) -> dict[str, Any]:
    return {
        "method": check.method,
        "statistic": check.statistic,
        "limit": check.limit,
        "scores": check.scores,
    }

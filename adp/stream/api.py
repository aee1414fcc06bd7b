"""``adp.stream.run_stream``: run a stream spec, audited, until it is stopped.

The same function runs ``adp stream STREAM.yaml`` and a stream started from Python (or, in
time, by the ADP service, whose job lifecycle passes ``source``, ``identity`` and its own
``client``). It connects to the cluster, writes the ``stream.run`` audit record (nothing
runs if it cannot be written), loads or fits the model, sets the threshold, opens the
broker and the sinks, and runs :class:`~adp.stream.runner.StreamRunner` until SIGTERM or
SIGINT (finishing and acknowledging the batches in flight), ``max_events``, or
``until_idle`` seconds without events.

Audit records (each with the run's ``job_id``): ``stream.run`` (``started``, then its
outcome), ``stream.model`` (which model, its version and fit id), ``stream.threshold``
(set at start; adaptive thresholds' moves), ``stream.window`` (per-key windows: their
shape, their store, how many keys' state was restored), ``stream.drift``,
``stream.refit`` (a refit requested on drift: :mod:`adp.stream.refit`) and ``stream.stop``
(why, and what the run did).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adp.errors import SpecError
from adp.stream.runner import Stopper, StreamStats
from adp.stream.sinks import Sink
from adp.stream.spec import StreamSpec

__all__ = ["StreamResult", "run_stream"]


@dataclass
class StreamResult:
    """What :func:`run_stream` returns.

    Attributes
    ----------
    stream_id : str
        The run's id (the ``job_id`` of its audit records).
    name : str
        The spec's name.
    model : str
        ``name@version``, or ``fit:<detector>``.
    threshold_kind : str
    stats : StreamStats
    """

    stream_id: str
    name: str
    model: str
    threshold_kind: str
    stats: StreamStats

    def summary(self) -> str:
        """One line: what the run did and why it stopped."""
        s = self.stats
        return (
            f"{self.name}: {s.events:,} events, {s.results:,} results ({s.anomalies:,} "
            f"anomalies), {s.dead_letters:,} dead letters, {s.batches:,} batches in "
            f"{s.seconds:.1f} s; model {self.model}, threshold {self.threshold_kind}; "
            f"stopped by {s.stopped_by}"
        )


def _as_spec(spec: StreamSpec | str | Path | Mapping[str, Any]) -> StreamSpec:
    if isinstance(spec, StreamSpec):
        return spec
    if isinstance(spec, str | Path):
        return StreamSpec.from_yaml(spec)
    if isinstance(spec, Mapping):
        return StreamSpec.from_dict(dict(spec))
    raise SpecError(
        f"run_stream() takes a StreamSpec, a path to a YAML spec or a mapping, got "
        f"{type(spec).__name__}"
    )


@contextlib.contextmanager
def _stop_on_signals(stopper: Stopper) -> Iterator[None]:
    """SIGTERM and SIGINT ask ``stopper`` to stop (in-flight batches finish and are
    acknowledged); a second one interrupts at once (``KeyboardInterrupt``). Only the main
    thread can install handlers; elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if stopper.stopping:
            raise KeyboardInterrupt(f"interrupted by a second {signal.Signals(signum).name}")
        stopper.stop(f"signal {signal.Signals(signum).name}")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)


def _sinks(spec: StreamSpec, broker: Any) -> list[Sink]:
    from adp.stream.sinks import SqlSink, StreamSink

    out: list[Sink] = []
    if spec.sinks.sql is not None:
        out.append(SqlSink(spec.sinks.sql.url, spec.sinks.sql.table, spec.key))
    if spec.sinks.stream is not None:
        s = spec.sinks.stream
        out.append(StreamSink(broker, s.stream, only_anomalies=s.only_anomalies, maxlen=s.maxlen))
    return out


def _window_store(spec: StreamSpec) -> Any:
    """Where the spec's windows persist (:meth:`StreamSpec.window_location`; one row set
    per source stream and consumer group: the windows belong with the group's position)."""
    from adp.stream.window_store import RedisWindowStore, SqlWindowStore

    kind, url, name = spec.window_location()
    if kind == "sql":
        source = spec.source
        return SqlWindowStore(url, name, f"{source.kind}:{source.stream}#{source.group}")
    return RedisWindowStore(url, name)


def _windows(spec: StreamSpec, model: Any, record: Any) -> Any:
    """The spec's per-key windows, their state restored from their store (audited)."""
    from adp.stream.windows import Windows

    if spec.window is None:
        return None
    shape = spec.window.shape()
    detector = model.detector
    impute = getattr(detector, "missing_", "fail") == "impute_median"
    store = _window_store(spec)
    try:
        windows = Windows(shape, detector.features_, impute=impute, store=store)
    except BaseException:
        store.close()
        raise
    details = {
        "by": list(shape.by),
        "size": shape.size,
        "slide": shape.slide,
        "columns": list(shape.columns),
        "features": list(shape.features),
        "store": store.name,
        "restored_keys": len(windows),
    }
    record("stream.window", "restore", details)
    return windows


def run_stream(
    spec: StreamSpec | str | Path | Mapping[str, Any],
    client: Any = None,
    *,
    scheduler: str | None = None,
    max_events: int | None = None,
    until_idle: float | None = None,
    stopper: Stopper | None = None,
    sinks: Sequence[Sink] = (),
    audit_log: Any = None,
    source: str = "api",
    identity: str | None = None,
) -> StreamResult:
    """Consume a stream, score its events on the cluster, write the results.

    Parameters
    ----------
    spec : StreamSpec, path or mapping
        The stream spec (a YAML file's path is read with ``yaml.safe_load``).
    client : distributed.Client, optional
        The cluster to score on (left open); default: ``scheduler``, the spec's
        ``cluster`` section, or a LocalCluster (:func:`adp.cluster.cluster_for`).
    scheduler : str, optional
        A scheduler address, over the spec's.
    max_events : int, optional
        Stop after taking this many messages.
    until_idle : float, optional
        Stop after this many seconds with no message and nothing in flight.
    stopper : Stopper, optional
        Lets another thread stop the run (:meth:`Stopper.stop`).
    sinks : sequence of Sink, optional
        More sinks, after the spec's.
    audit_log : AuditLog, optional
        Default: the configured one (``adp.audit.url``).
    source, identity : str, optional
        Who started the run, for the audit records (``"cli"``, ``"api"``).

    Returns
    -------
    StreamResult

    Raises
    ------
    adp.errors.SpecError
        For an invalid spec, naming the field.
    adp.errors.AuditError
        When an audit record cannot be written (the stream does not run, or stops).
    adp.errors.SourceError
        When the broker or a sink cannot be reached.

    Examples
    --------
    >>> result = adp.stream.run_stream("stream.yaml", until_idle=30)  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    from adp.cluster import cluster_for
    from adp.observe.audit import AuditLog, audited
    from adp.observe.orphans import process_owner

    spec = _as_spec(spec)
    stopper = stopper if stopper is not None else Stopper()
    log = audit_log if audit_log is not None else AuditLog()
    stream_id = uuid.uuid4().hex
    resource = spec.source.shown()

    def record(event_type: str, action: str, details: dict[str, Any]) -> None:
        log.append(
            event_type,
            action=action,
            resource=resource,
            job_id=stream_id,
            details=details,
            source=source,
            identity=identity,
        )

    shape = spec.cluster
    with (
        _stop_on_signals(stopper),
        cluster_for(
            scheduler or shape.address,
            client=client,
            n_workers=shape.n_workers,
            threads_per_worker=shape.threads_per_worker,
            memory_limit=shape.memory_limit,
        ) as c,
        c.as_current(),
        audited(
            log,
            "stream.run",
            action="consume",
            resource=resource,
            job_id=stream_id,
            details={"name": spec.name, "owner": process_owner().to_dict()},
            source=source,
            identity=identity,
            client=c,
        ),
    ):
        stats, model_ref = _run(spec, c, stopper, record, sinks, max_events, until_idle, stream_id)
    return StreamResult(stream_id, spec.name, model_ref, spec.threshold.kind, stats)


def _run(
    spec: StreamSpec,
    client: Any,
    stopper: Stopper,
    record: Any,
    extra_sinks: Sequence[Sink],
    max_events: int | None,
    until_idle: float | None,
    stream_id: str,
) -> tuple[StreamStats, str]:
    from adp.config import settings
    from adp.redact import redact_url
    from adp.stream.brokers import open_broker
    from adp.stream.drift import DriftMonitor
    from adp.stream.model import build_threshold, resolve_model
    from adp.stream.refit import RefitRequests
    from adp.stream.runner import StreamRunner

    cfg = settings().stream
    batch_events, wait_ms, in_flight = spec.batch_settings()
    model = resolve_model(spec)
    record("stream.model", "fit" if spec.fit else "load", model.audit_details())
    threshold = build_threshold(spec, model)
    t = spec.threshold
    record(
        "stream.threshold",
        "set",
        {
            "kind": t.kind,
            "value": threshold.value if threshold.value != float("inf") else None,
            "contamination": t.contamination,
            "q": t.q,
            "window": t.window if t.kind in ("quantile", "spot") else None,
        },
    )
    drift = None
    if spec.drift is not None:
        assert model.reference is not None  # resolve_model refused otherwise
        d = spec.drift
        drift = DriftMonitor(model.reference, d.method, d.window, d.every, d.limit)
    refit = None
    if spec.drift is not None and spec.drift.refit:
        refit = RefitRequests(spec, model, stream_id, record)
    windows = _windows(spec, model, record)
    broker = open_broker(spec.source, max_unacked=(in_flight + 1) * batch_events)
    try:
        runner = StreamRunner(
            broker,
            client,
            model,
            threshold,
            [*_sinks(spec, broker), *extra_sinks],
            spec.dead_letter.stream,
            key=spec.key,
            max_events=batch_events,
            max_wait_ms=wait_ms,
            max_in_flight=in_flight,
            source=f"{spec.source.kind}:{redact_url(spec.source.url)}#{spec.source.stream}",
            drift=drift,
            audit=record,
            threshold_audit=(cfg.threshold_audit_change, cfg.threshold_audit_seconds),
            stopper=stopper,
            windows=windows,
            on_drift=refit,
        )
        stats = runner.run(max_events=max_events, until_idle=until_idle)
    finally:
        broker.close()
        if windows is not None:
            windows.close()
    record("stream.stop", "stop", {"reason": stats.stopped_by, **stats.to_dict()})
    return stats, model.ref

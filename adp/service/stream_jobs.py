"""Streams as service jobs: submitted, governed, driven, cancelled and audited like the
batch jobs, through the same queue, states and pages.

A stream job's stored spec is ``{"stream": <stream spec>}`` (:func:`is_stream`). What it
needs the policy to grant (:func:`stream_checks`):

- ``jobs:submit``;
- ``stream:read`` of its source, written ``<kind>://<host[:port]>/<stream>`` (no
  credentials), e.g. ``stream:read:redis://127.0.0.1:6379/sensors``;
- ``stream:write`` of the streams it writes (its result stream and its dead-letter stream,
  on the source's broker), ``data:write`` of its SQL sink's table (as for a batch job);
- where its per-key windows persist: ``stream:write`` of their Redis hash
  (``redis://<host[:port]>/<key>``, by default ``<stream>:adp-windows:<group>`` beside the
  source), or ``data:write`` of their SQL table;
- ``models:use`` of a registered model, or ``data:read`` of the batch source it fits on.

The driver runs it with :func:`adp.stream.run_stream` on the job's own client, with the
caller's identity in every audit record; a cancel request or the service stopping asks the
stream to stop, and the batches in flight are finished and acknowledged first. A stream
that ends by itself (``max_events``, ``until_idle``) has ``succeeded``; one stopped by its
owner is ``cancelled``, by the service ``interrupted``; ``resume`` starts it again from
its consumer group (nothing acknowledged is read twice).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from adp.errors import SpecError
from adp.stream.spec import BrokerSpec, StreamSpec

__all__ = ["STREAM_KEY", "is_stream", "run_stream_job", "stream_checks", "stream_spec"]

#: The one key of a stream job's stored spec.
STREAM_KEY = "stream"
#: Seconds between two looks at a stream job's cancel request.
WATCH_SECONDS = 0.5


def is_stream(spec: Mapping[str, Any]) -> bool:
    """Whether a stored job spec is a stream's (``{"stream": {...}}``)."""
    return set(spec) == {STREAM_KEY} and isinstance(spec[STREAM_KEY], Mapping)


def stream_spec(data: Any, origin: str = "stream spec") -> StreamSpec:
    """Validate a submitted stream spec (the mapping under ``stream``).

    Raises
    ------
    adp.errors.SpecError
        Naming the field at fault, as ``stream.<field>``.
    """
    try:
        return StreamSpec.from_dict(data, origin=origin)
    except SpecError as exc:
        raise SpecError(str(exc).replace(f"{origin} is invalid: ", "stream.", 1)) from None


def broker_resource(broker: BrokerSpec, stream: str | None = None) -> str:
    """A broker's stream as a policy resource: ``<kind>://<host[:port]>/<stream>``."""
    parts = urlsplit(broker.url if "://" in broker.url else f"{broker.kind}://{broker.url}")
    host = (parts.hostname or "").lower()
    port = f":{parts.port}" if parts.port else ""
    return f"{broker.kind}://{host}{port}/{stream or broker.stream}"


def _window_checks(
    spec: StreamSpec, tables: Callable[..., list[str]]
) -> list[tuple[str, str | None]]:
    """Where the spec's per-key windows persist is written to
    (:meth:`adp.stream.spec.StreamSpec.window_location`): ``stream:write`` on a Redis
    hash (``redis://<host[:port]>/<key>``), ``data:write`` on a SQL table."""
    if spec.window is None:
        return []
    kind, url, name = spec.window_location()
    if kind == "sql":
        return [("data:write", r) for r in tables(url, name)]
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return [("stream:write", f"redis://{(parts.hostname or '').lower()}{port}/{name}")]


def stream_checks(spec: StreamSpec) -> list[tuple[str, str | None]]:
    """What running ``spec`` needs the policy to grant, as ``(action, resource)`` pairs
    (see the module docstring), without duplicates."""
    from adp.service.policy import _source_resources, _tables

    checks: list[tuple[str, str | None]] = [("jobs:submit", None)]
    checks.append(("stream:read", broker_resource(spec.source)))
    if spec.sinks.stream is not None:
        checks.append(("stream:write", broker_resource(spec.source, spec.sinks.stream.stream)))
    checks.append(("stream:write", broker_resource(spec.source, spec.dead_letter.stream)))
    if spec.sinks.sql is not None:
        checks += [("data:write", r) for r in _tables(spec.sinks.sql.url, spec.sinks.sql.table)]
    checks += _window_checks(spec, _tables)
    if spec.model is not None:
        checks.append(("models:use", spec.model.partition("@")[0].strip()))
    sources = [spec.fit.source if spec.fit is not None else None, spec.threshold.source]
    for source in sources:
        if source is not None:
            checks += [("data:read", r) for r in _source_resources(source)]
    return list(dict.fromkeys(checks))


def run_stream_job(
    spec: StreamSpec,
    *,
    client: Any,
    audit_log: Any,
    identity: str,
    job_id: str,
    stop_check: Callable[[], None],
) -> tuple[str, dict[str, Any], str | None]:
    """Run a stream job until it ends, is cancelled or the service stops.

    Parameters
    ----------
    stop_check : callable
        Raises when the job must stop (a cancel request, the service stopping); polled
        every :data:`WATCH_SECONDS` from a thread of its own.

    Returns
    -------
    tuple
        ``(state, summary, reason)``: ``succeeded``, ``cancelled`` or ``interrupted``,
        what the run did, and why it stopped early (None when it ended by itself).
    """
    from adp.stream import run_stream
    from adp.stream.runner import Stopper

    stopper = Stopper()
    why: dict[str, BaseException] = {}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(WATCH_SECONDS):
            try:
                stop_check()
            except BaseException as exc:  # a cancel request, or the service stopping
                why["stop"] = exc
                stopper.stop(str(exc))
                return

    watcher = threading.Thread(target=watch, name=f"adp-stream-{job_id[:8]}", daemon=True)
    watcher.start()
    try:
        result = run_stream(
            spec,
            client,
            stopper=stopper,
            audit_log=audit_log,
            source="service",
            identity=identity,
        )
    finally:
        done.set()
        watcher.join()
    summary = {
        "stream_id": result.stream_id,
        "model": result.model,
        "threshold_kind": result.threshold_kind,
        **result.stats.to_dict(),
    }
    stop = why.get("stop")
    if stop is None:
        return "succeeded", summary, None
    return str(getattr(stop, "outcome", "interrupted")), summary, str(stop)

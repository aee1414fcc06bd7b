"""Streaming detection: the batch model scores events from a broker as they arrive.

::

    result = adp.stream.run_stream("stream.yaml", until_idle=30)   # or `adp stream stream.yaml`
    print(result.summary())

Modules, one job each: :mod:`~adp.stream.spec` (the typed YAML spec, with
:mod:`~adp.stream.spec_base` and :mod:`~adp.stream.window_spec`),
:mod:`~adp.stream.brokers` (Redis Streams, NATS JetStream, Kafka behind one interface),
:mod:`~adp.stream.decode` (messages to rows, dead letters with reasons),
:mod:`~adp.stream.model` (the registered or fitted model and its calibration),
:mod:`~adp.stream.scoring` (a micro-batch scored on a worker by the batch path),
:mod:`~adp.stream.windows` (per-key windows and their features) and
:mod:`~adp.stream.window_store` (where they persist),
:mod:`~adp.stream.thresholds` (fitted, rolling quantile, SPOT), :mod:`~adp.stream.drift`,
:mod:`~adp.stream.refit` (refit requests on drift),
:mod:`~adp.stream.results` (a scored batch as result rows and dead letters),
:mod:`~adp.stream.sinks` (SQL table and output stream, idempotent by message id),
:mod:`~adp.stream.collector` (the garbage collector tuned for ``adp stream``),
:mod:`~adp.stream.runner` (the loop), :mod:`~adp.stream.api` (:func:`run_stream`) and
:mod:`~adp.stream.cli` (``adp stream``). Imports are lazy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adp.lazy import lazy_exports

__all__ = ["Stopper", "StreamResult", "StreamSpec", "run_stream"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "run_stream": "adp.stream.api",
        "StreamResult": "adp.stream.api",
        "StreamSpec": "adp.stream.spec",
        "Stopper": "adp.stream.runner",
    },
)

if TYPE_CHECKING:  # pragma: no cover
    from adp.stream.api import StreamResult as StreamResult
    from adp.stream.api import run_stream as run_stream
    from adp.stream.runner import Stopper as Stopper
    from adp.stream.spec import StreamSpec as StreamSpec

"""Brokers behind one interface (:class:`Broker`): Redis Streams, NATS JetStream, Kafka.

:func:`open_broker` opens the one a stream spec's ``source`` names.
"""

from __future__ import annotations

import socket

from adp.stream.brokers.protocol import Broker, Message
from adp.stream.spec import BrokerSpec

__all__ = ["Broker", "Message", "open_broker"]


def open_broker(source: BrokerSpec, *, max_unacked: int = 10_000) -> Broker:
    """Connect to the broker ``source`` names, as a consumer of its stream.

    Parameters
    ----------
    source : BrokerSpec
        The spec's ``source`` section.
    max_unacked : int
        How many delivered, unacknowledged messages the runner may hold (NATS: a new
        durable's ``max_ack_pending``).

    Returns
    -------
    Broker

    Raises
    ------
    adp.errors.SourceError
        When the broker cannot be reached or the stream does not exist (NATS), naming it.
    """
    from adp.config import settings

    cfg = settings()
    if source.kind == "redis":
        from adp.stream.brokers.redis_streams import RedisStreamsBroker

        return RedisStreamsBroker(
            source.url,
            source.stream,
            source.group,
            source.consumer or socket.gethostname(),
            field=source.field,
            start=source.start,
            claim_idle_ms=source.claim_idle_ms or cfg.stream.claim_idle_ms,
            dedupe_seconds=cfg.stream.dedupe_hours * 3600.0,
            connect_timeout=cfg.io.connect_timeout,
        )
    if source.kind == "nats":
        from adp.stream.brokers.nats_jetstream import NatsJetStreamBroker

        return NatsJetStreamBroker(
            source.url,
            source.stream,
            source.durable or source.group,
            subject=source.subject,
            start=source.start,
            ack_wait_seconds=source.ack_wait_seconds or cfg.stream.ack_wait_seconds,
            max_ack_pending=max(max_unacked, 1000),
            connect_timeout=cfg.io.connect_timeout,
        )
    from adp.stream.brokers.kafka import KafkaBroker

    return KafkaBroker(
        source.url, source.stream, source.group, start=source.start, options=source.options
    )

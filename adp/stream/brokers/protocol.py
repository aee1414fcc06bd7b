"""What the stream runner needs of a broker: fetch, acknowledge, reclaim, publish.

Every broker ADP consumes (Redis Streams, NATS JetStream, Kafka) sits behind
:class:`Broker`. The runner is synchronous; a broker whose client is asynchronous (nats-py)
runs it on a private event loop thread behind these blocking methods.

Delivery is at least once: a message fetched and not acknowledged (the consumer died, a
sink failed) is delivered again, to this consumer or another of its group. Sinks are
idempotent by :attr:`Message.id`, so a redelivered message never makes a second result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["Broker", "Message"]


class Message(NamedTuple):
    """One event as the broker delivered it (a named tuple: thousands of them travel to a
    worker with each micro-batch, and tuples pickle cheaply).

    Attributes
    ----------
    id : str
        Unique within the source stream and stable across redeliveries: the Redis entry
        id, the JetStream stream sequence, ``partition:offset`` in Kafka. Results carry it
        as ``message_id``.
    data : bytes
        The payload: one JSON object.
    timestamp : float or None
        When the broker stored the event (seconds since the epoch), if it says.
    """

    id: str
    data: bytes
    timestamp: float | None = None


@runtime_checkable
class Broker(Protocol):
    """A consumer (in a group) of one source stream, and a publisher on the same broker."""

    def fetch(self, max_events: int, wait_ms: int) -> list[Message]:
        """New messages for this consumer: at most ``max_events``, waiting at most
        ``wait_ms`` for the first one; ``[]`` when none came."""
        ...

    def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge messages: they are never delivered again. Returns once the broker
        has them (not merely queued on the client)."""
        ...

    def reclaim(self, max_events: int) -> list[Message]:
        """Messages delivered before but never acknowledged, by this consumer's previous
        life or a dead consumer of its group, now handed to this one (Redis
        ``XAUTOCLAIM``); ``[]`` where the broker redelivers by itself (JetStream after its
        ack wait, Kafka from the last committed offset)."""
        ...

    def publish(
        self, stream: str, items: Sequence[tuple[str, bytes]], *, maxlen: int | None = None
    ) -> int:
        """Publish ``(message_id, payload)`` pairs to ``stream``, idempotently where the
        broker can (Redis, NATS): an id already published there (a redelivered message's
        second result) is skipped. ``maxlen`` trims a Redis stream to about that length.
        Returns how many were published."""
        ...

    def lag(self) -> int | None:
        """Events in the source not yet acknowledged by the group, if the broker says."""
        ...

    def close(self) -> None:
        """Release connections (unacknowledged messages stay pending)."""
        ...

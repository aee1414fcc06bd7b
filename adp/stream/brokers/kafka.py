"""Kafka through confluent-kafka, behind the same :class:`~adp.stream.brokers.Broker`.

**Untested**: there is no Kafka broker on ADP's development and CI machines, so no test
runs this module against one. It is written to the documented confluent-kafka API and kept
small; treat it as a starting point and test it against your cluster before relying on it.

Each event is one record whose value is the JSON object; its id is ``partition:offset``.
Offsets are committed by hand (``enable.auto.commit=false``): Kafka commits a position per
partition, not single records, so :meth:`KafkaBroker.ack` commits, for each partition, up
to the first record fetched and not yet acknowledged. After a crash the group resumes from
the last committed offsets: records after them are delivered again, and the idempotent
sinks absorb the repeats (:meth:`reclaim` has nothing to do).

Publishing keys each record by ``<source topic>:<message id>``. Kafka cannot drop a record
a restarted producer sends again, so outputs are at least once: deduplicate downstream by
key (for example with a compacted topic).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from adp.errors import SourceError
from adp.stream.brokers.protocol import Message

__all__ = ["KafkaBroker"]


class KafkaBroker:
    """A consumer of the topic ``topic`` in group ``group`` (untested: see the module).

    Parameters
    ----------
    bootstrap : str
        ``host:9092[,host:9092]`` (a ``kafka://`` prefix is dropped).
    topic, group : str
        The source topic and the consumer group (``group.id``).
    start : {"earliest", "latest"}
        ``auto.offset.reset`` for a group without committed offsets.
    options : dict, optional
        More librdkafka settings (security, SASL credentials, ...), for both the consumer
        and the producer.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        start: str = "earliest",
        options: dict[str, Any] | None = None,
    ) -> None:
        from confluent_kafka import Consumer, Producer

        servers = bootstrap.removeprefix("kafka://")
        common = {"bootstrap.servers": servers, **(options or {})}
        self.topic = topic
        self._shown = servers.split("@")[-1]
        self._consumer = Consumer(
            {
                **common,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": start,
            }
        )
        self._producer = Producer(common)
        self._consumer.subscribe([topic])
        self._fetched: dict[int, collections.deque[int]] = collections.defaultdict(
            collections.deque
        )
        self._done: dict[int, set[int]] = collections.defaultdict(set)
        self._lock = threading.Lock()  # fetch and ack run on the runner's two threads

    def __repr__(self) -> str:
        return f"KafkaBroker({self._shown!r}, topic={self.topic!r})"

    def fetch(self, max_events: int, wait_ms: int) -> list[Message]:
        """Up to ``max_events`` records (``Consumer.consume``); errors other than reaching
        a partition's end are raised."""
        from confluent_kafka import KafkaError

        records = self._consumer.consume(num_messages=max_events, timeout=wait_ms / 1000.0)
        out = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise SourceError(f"cannot read topic {self.topic!r} at {self._shown}: {error}")
            partition, offset = int(record.partition() or 0), int(record.offset() or 0)
            with self._lock:
                self._fetched[partition].append(offset)
            kind, stamp = record.timestamp()
            out.append(
                Message(
                    f"{partition}:{offset}", record.value() or b"", stamp / 1000.0 if kind else None
                )
            )
        return out

    def ack(self, ids: Sequence[str]) -> None:
        """Commit, per partition, the offsets up to the first unacknowledged record."""
        from confluent_kafka import TopicPartition

        commits = []
        with self._lock:
            for mid in ids:
                part, _, offset = mid.partition(":")
                self._done[int(part)].add(int(offset))
            for partition, fetched in self._fetched.items():
                done, last = self._done[partition], None
                while fetched and fetched[0] in done:
                    last = fetched.popleft()
                    done.discard(last)
                if last is not None:
                    commits.append(TopicPartition(self.topic, partition, last + 1))
        if commits:
            self._consumer.commit(offsets=commits, asynchronous=False)

    def reclaim(self, max_events: int) -> list[Message]:
        """Nothing: a group resumes from its committed offsets."""
        return []

    def publish(
        self, stream: str, items: Sequence[tuple[str, bytes]], *, maxlen: int | None = None
    ) -> int:
        """Produce each payload to topic ``stream``, keyed by source and message id, and
        wait for delivery (``flush``). Every record is sent (see the module on repeats)."""
        for mid, payload in items:
            self._producer.produce(stream, value=payload, key=f"{self.topic}:{mid}")
        left = self._producer.flush(30)
        if left:
            raise SourceError(f"{left} records to topic {stream!r} at {self._shown} not delivered")
        return len(items)

    def lag(self) -> int | None:
        """Not measured for Kafka (use the group's consumer lag from your monitoring)."""
        return None

    def close(self) -> None:
        """Close the consumer (leaving the group) and flush the producer."""
        self._producer.flush(10)
        self._consumer.close()

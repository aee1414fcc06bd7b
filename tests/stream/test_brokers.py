"""The brokers on the machine's real Redis and NATS JetStream: reclaiming a dead
consumer's messages, redelivery, idempotent publishing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from stream_helpers import (
    NATS_URL,
    REDIS_URL,
    nats_delete,
    nats_publish,
    nats_read,
    nats_setup,
    unique,
    xadd_all,
)

from adp.errors import SourceError
from adp.stream.brokers.nats_jetstream import NatsJetStreamBroker
from adp.stream.brokers.protocol import Broker
from adp.stream.brokers.redis_streams import RedisStreamsBroker


def _redis(stream: str, consumer: str, claim_idle_ms: int = 60_000) -> RedisStreamsBroker:
    return RedisStreamsBroker(REDIS_URL, stream, "adp", consumer, claim_idle_ms=claim_idle_ms)


def test_a_restarted_redis_consumer_rereads_its_own_pending_messages(
    redis_client: Any, redis_stream: str
) -> None:
    ids = xadd_all(redis_client, redis_stream, [b'{"n": %d}' % i for i in range(10)])
    first = _redis(redis_stream, "worker")
    assert isinstance(first, Broker)
    assert [m.id for m in first.fetch(4, 10)] == ids[:4]  # then it "dies": no ack
    first.close()
    again = _redis(redis_stream, "worker")
    assert [m.id for m in again.reclaim(3)] == ids[:3]  # paged by max_events
    assert [m.id for m in again.reclaim(3)] == ids[3:4]
    assert again.reclaim(3) == []  # its own pending are read once, at start
    assert [m.id for m in again.fetch(10, 10)] == ids[4:]
    again.ack(ids)
    assert redis_client.xpending(redis_stream, "adp")["pending"] == 0
    assert again.lag() == 0
    again.close()


def test_a_dead_redis_consumers_messages_are_claimed_once_idle(
    redis_client: Any, redis_stream: str
) -> None:
    ids = xadd_all(redis_client, redis_stream, [b"{}"] * 6)
    dead = _redis(redis_stream, "dead")
    taken = dead.fetch(5, 10)
    dead.close()
    heir = _redis(redis_stream, "heir", claim_idle_ms=300)
    assert heir.reclaim(10) == []  # not idle long enough yet
    time.sleep(0.45)
    claimed = heir.reclaim(10)
    assert [m.id for m in claimed] == [m.id for m in taken] == ids[:5]
    assert claimed[0].data == b"{}" and claimed[0].timestamp is not None
    summary = redis_client.xpending(redis_stream, "adp")
    held = {c["name"].decode(): int(c["pending"]) for c in summary["consumers"]}
    assert held == {"heir": 5}
    heir.close()


def test_redis_publishing_is_idempotent_by_message_id(redis_client: Any, redis_stream: str) -> None:
    broker = _redis(redis_stream, "p")
    out = f"{redis_stream}-out"
    items = [("1-0", b"a"), ("2-0", b"b"), ("3-0", b"c")]
    assert broker.publish(out, items) == 3
    assert broker.publish(out, [*items[1:], ("4-0", b"d")]) == 1  # a redelivery's results
    entries = redis_client.xrange(out)
    assert [(f[b"message_id"], f[b"data"]) for _, f in entries] == [
        (b"1-0", b"a"),
        (b"2-0", b"b"),
        (b"3-0", b"c"),
        (b"4-0", b"d"),
    ]
    other = RedisStreamsBroker(REDIS_URL, f"{redis_stream}-other", "adp", "p")
    assert other.publish(out, items[:1]) == 1  # ids are unique per source stream only
    second_model = RedisStreamsBroker(REDIS_URL, redis_stream, "adp-second", "p")
    assert second_model.publish(out, items[:2]) == 2  # another group's results are its own
    assert second_model.publish(out, items[:2]) == 0
    assert len(redis_client.xrange(out)) == 7
    twice = [("5-0", b"e"), ("6-0", b"f"), ("5-0", b"e")]  # one id twice in one batch
    assert broker.publish(out, twice) == 2
    many = [(f"{i}-1", b"x") for i in range(2500)]  # three script calls, one pipeline
    assert broker.publish(out, [*many, *items]) == 2500
    assert broker.publish(out, many[1000:1500]) == 0
    assert len(redis_client.xrange(out)) == 7 + 2 + 2500
    broker.close()
    other.close()
    second_model.close()


@pytest.fixture
def jetstream(nats_ok: str) -> Iterator[tuple[str, str]]:
    """A JetStream stream (and its subject) of its own, deleted afterwards."""
    name = unique("ADPT").replace("-", "_")
    subject = f"adpt.{name}.in"
    nats_setup({name: [subject], f"{name}_OUT": [f"adpt.{name}.out"]})
    yield name, subject
    nats_delete([name, f"{name}_OUT"])


def test_jetstream_redelivers_what_a_dead_consumer_did_not_acknowledge(
    jetstream: tuple[str, str],
) -> None:
    name, subject = jetstream
    seqs = nats_publish(subject, [b'{"n": %d}' % i for i in range(8)])
    first = NatsJetStreamBroker(NATS_URL, name, "adp", ack_wait_seconds=1.0)
    taken = first.fetch(5, 2000)
    assert [m.id for m in taken] == [str(s) for s in seqs[:5]]
    first.ack([m.id for m in taken[:2]])
    first.close()  # dies with three unacknowledged
    second = NatsJetStreamBroker(NATS_URL, name, "adp", ack_wait_seconds=1.0)
    assert second.reclaim(10) == []  # JetStream redelivers by itself
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while len(seen) < 6 and time.monotonic() < deadline:
        batch = second.fetch(10, 500)
        second.ack([m.id for m in batch])
        seen += [m.id for m in batch]
    assert sorted(seen, key=int) == [str(s) for s in seqs[2:]]  # 3 redelivered + 3 new
    assert second.lag() == 0
    second.close()


def test_jetstream_publishing_is_idempotent_by_message_id(jetstream: tuple[str, str]) -> None:
    name, _ = jetstream
    broker = NatsJetStreamBroker(NATS_URL, name, "adp")
    out = f"adpt.{name}.out"
    assert broker.publish(out, [("1", b"a"), ("2", b"b")]) == 2
    assert broker.publish(out, [("2", b"b"), ("3", b"c")]) == 1
    stored = nats_read(f"{name}_OUT")
    assert [data for _, data in stored] == [b"a", b"b", b"c"]
    assert stored[0][0]["Nats-Msg-Id"] == f"{name}:1"
    broker.close()


def test_a_missing_jetstream_stream_is_named(nats_ok: str) -> None:
    with pytest.raises(SourceError, match="there is no JetStream stream 'ADPT_NONE'"):
        NatsJetStreamBroker(NATS_URL, "ADPT_NONE", "adp")

"""Redis Streams: a consumer in a consumer group (``XREADGROUP``, ``XACK``, ``XAUTOCLAIM``).

Each event is one stream entry whose ``field`` (default ``data``) holds the JSON object.
The group is created (with the stream, ``MKSTREAM``) when missing, at the stream's first
entry (``start: earliest``) or its end (``latest``).

A restarted consumer of the same name first re-reads its own pending entries (``XREADGROUP
... 0``): what it had fetched but not acknowledged when it died. Entries pending with any
consumer of the group for longer than ``claim_idle_ms`` are taken over with ``XAUTOCLAIM``
(a consumer that died for good, or restarted under another name).

Publishing is idempotent by message id: one Lua script adds the ids of a batch (as
``<source stream>:<group>:<id>``) to a sorted set beside the output stream
(``<stream>:adp-published``, scored by time and trimmed after
``dedupe_seconds``) and ``XADD`` s only the entries whose id was new, atomically, so a
redelivered message's result is not published twice. The script asks which ids it has seen
with one ``ZMSCORE`` and records the new ones with one ``ZADD`` per chunk of 1,000 (a ``ZADD
NX`` per id cost about 2 us of Redis's CPU per event): it needs Redis 6.2 or newer. (On a
Redis Cluster both keys must share a slot: name the output stream with a hash tag, e.g.
``{out}:scores``.)

Throughput: entries are read as hiredis parsed them (redis-py's reply callbacks, which
build a dict per entry in Python, are switched off for ``XREADGROUP`` and ``XAUTOCLAIM``);
a batch's results are published in one pipelined round trip, and they and its
acknowledgements travel to the scripts as one msgpack array per call rather than one
command argument per id (which redis-py encodes one by one in Python).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from operator import itemgetter
from typing import Any

import msgpack

from adp.errors import SourceError
from adp.redact import redact_url
from adp.stream.brokers.protocol import Message

__all__ = ["RedisStreamsBroker"]

_CHUNK = 1000
_SOCKET_TIMEOUT = 60.0
_DEDUPE_SUFFIX = ":adp-published"

# The Lua scripts take a batch's ids (and payloads) as one msgpack array: redis-py encodes
# every argument of a command in Python (~3 us each), Redis unpacks the array in C. (Packed
# with use_bin_type=False: the cmsgpack Redis embeds predates msgpack's bin type.)
# KEYS[1] the output stream, KEYS[2] the sorted set of published ids.
# ARGV: now (ms), horizon (ms), maxlen (0: none), field, id prefix, [id, payload, ...].
_PUBLISH_ONCE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local items = cmsgpack.unpack(ARGV[6])
local maxlen = tonumber(ARGV[3])
local members = {}
for i = 1, #items, 2 do
  members[#members + 1] = ARGV[5] .. items[i]
end
if #members == 0 then
  return 0
end
local seen = redis.call('ZMSCORE', KEYS[2], unpack(members))
local fresh, taken = {}, {}
for i, member in ipairs(members) do
  if not seen[i] and not taken[member] then
    taken[member] = true
    fresh[#fresh + 1] = ARGV[1]
    fresh[#fresh + 1] = member
    local id, payload = items[2 * i - 1], items[2 * i]
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'message_id', id, ARGV[4], payload)
    else
      redis.call('XADD', KEYS[1], '*', 'message_id', id, ARGV[4], payload)
    end
  end
end
if #fresh > 0 then
  redis.call('ZADD', KEYS[2], unpack(fresh))
end
return #fresh / 2
"""

# KEYS[1] the source stream; ARGV: the group, [id, ...].
_ACK = """
local ids = cmsgpack.unpack(ARGV[2])
local acked = 0
for i = 1, #ids, 1000 do
  acked = acked + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids, i, math.min(i + 999, #ids)))
end
return acked
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _as_sent(response: Any, **options: Any) -> Any:
    return response


_first, _second = itemgetter(0), itemgetter(1)


def _millis(entry_id: str) -> float | None:
    """An entry id's time (``<ms>-<seq>``) in seconds since the epoch."""
    millis = entry_id.partition("-")[0]
    return int(millis) / 1000.0 if millis.isdigit() else None


def _field(fields: Sequence[Any] | None, key: bytes) -> bytes:
    """The value of ``key`` in a flat ``[field, value, ...]`` list (``b""`` without it)."""
    fields = fields or []
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == key:
            return bytes(fields[i + 1])
    return b""


class RedisStreamsBroker:
    """A consumer of the Redis stream ``stream`` in group ``group``.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    stream, group, consumer : str
        The stream key, the consumer group, this consumer's name.
    field : str, default "data"
        The entry field holding the JSON event (results are published under it too).
    start : {"earliest", "latest"}
        Where a new group starts.
    claim_idle_ms : int
        Take over entries pending with another consumer for longer than this.
    dedupe_seconds : float
        How long published ids are remembered for idempotent publishing.
    connect_timeout : float
        Seconds to wait for a connection.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        group: str,
        consumer: str,
        *,
        field: str = "data",
        start: str = "earliest",
        claim_idle_ms: int = 30_000,
        dedupe_seconds: float = 86_400.0,
        connect_timeout: float = 3.0,
    ) -> None:
        import redis

        self.stream, self.group, self.consumer, self.field = stream, group, consumer, field
        self.claim_idle_ms = int(claim_idle_ms)
        self.dedupe_ms = int(dedupe_seconds * 1000)
        self._shown = redact_url(url) or "redis"
        self._own_cursor: str | None = "0"  # own pending entries, read once at start
        self._claim_cursor = "0-0"
        self._next_claim = 0.0
        with self._errors("connect to"):
            self._redis = redis.Redis.from_url(
                url,
                socket_connect_timeout=connect_timeout,
                socket_timeout=_SOCKET_TIMEOUT,  # above any fetch's block: a hung server fails
                health_check_interval=30,
            )
            self._redis.ping()
            self._create_group("0" if start == "earliest" else "$")
        # Entries as the server sent them (hiredis-parsed): redis-py's own reply callbacks
        # turn each entry's fields into a dict in Python, the consumer's costliest step
        for command in ("XREADGROUP", "XAUTOCLAIM"):
            self._redis.set_response_callback(command, _as_sent)
        self._publish_once = self._redis.register_script(_PUBLISH_ONCE)
        self._ack = self._redis.register_script(_ACK)

    def __repr__(self) -> str:
        return f"RedisStreamsBroker({self._shown!r}, stream={self.stream!r}, group={self.group!r})"

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        import redis

        try:
            yield
        except redis.RedisError as exc:
            raise SourceError(
                f"cannot {doing} Redis at {self._shown} (stream {self.stream!r}, group "
                f"{self.group!r}): {exc}"
            ) from exc

    def _create_group(self, start_id: str) -> None:
        import redis

        try:
            self._redis.xgroup_create(self.stream, self.group, id=start_id, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # the group exists: keep its position
                raise

    def _messages(self, entries: Sequence[Any]) -> list[Message]:
        """Messages of raw entries ``[id, [field, value, ...]]``, column by column (a batch
        is thousands of entries). A deleted entry pending in the group has no fields: its
        payload is empty, a dead letter."""
        ids = [entry_id.decode() for entry_id in map(_first, entries)]
        fields = list(map(_second, entries))
        key = self.field.encode()
        try:  # the usual entries: the event's field only
            usual = set(map(_first, fields)) == {key}
        except TypeError:  # a deleted entry (None)
            usual = False
        data = list(map(_second, fields)) if usual else [_field(f, key) for f in fields]
        try:  # an entry id is <ms>-<seq>
            stamps: list[float | None] = [int(i[: i.find("-")]) / 1000.0 for i in ids]
        except ValueError:
            stamps = [_millis(i) for i in ids]
        # tuple.__new__ directly: Message(...) runs a Python-level __new__ per entry
        return list(map(tuple.__new__, repeat(Message), zip(ids, data, stamps, strict=True)))

    def _read(self, start_id: str, count: int, block: int | None) -> list[Message]:
        reply = self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: start_id}, count=count, block=block
        )
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3: {stream: entries}
            return self._messages(next(iter(reply.values()), []) or [])
        return self._messages(reply[0][1] or [])  # RESP2: [[stream, entries]]

    def fetch(self, max_events: int, wait_ms: int) -> list[Message]:
        """Up to ``max_events`` new entries (``XREADGROUP ... >``), blocking at most
        ``wait_ms`` (not at all when it is 0)."""
        with self._errors("read from"):
            return self._read(">", max_events, wait_ms if wait_ms > 0 else None)

    def ack(self, ids: Sequence[str]) -> None:
        """``XACK`` the ids (one script call per 10,000)."""
        with self._errors("acknowledge on"):
            for i in range(0, len(ids), 10_000):
                packed = msgpack.packb(list(ids[i : i + 10_000]), use_bin_type=False)
                self._ack(keys=[self.stream], args=[self.group, packed])

    def reclaim(self, max_events: int) -> list[Message]:
        """This consumer's own pending entries first (once, at start), then, at most every
        half ``claim_idle_ms``, entries idle longer than that with any consumer."""
        with self._errors("reclaim pending entries on"):
            if self._own_cursor is not None:
                own = self._read(self._own_cursor, max_events, None)
                if len(own) < max_events:
                    self._own_cursor = None
                else:
                    self._own_cursor = own[-1].id
                if own:
                    return own
            now = time.monotonic()
            if now < self._next_claim:
                return []
            reply = self._redis.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                self.claim_idle_ms,
                start_id=self._claim_cursor,
                count=max_events,
            )
            self._claim_cursor = _text(reply[0])
            if self._claim_cursor == "0-0":  # the scan went round: rest until next time
                self._next_claim = now + self.claim_idle_ms / 2000.0
            return self._messages(reply[1] or [])

    def publish(
        self, stream: str, items: Sequence[tuple[str, bytes]], *, maxlen: int | None = None
    ) -> int:
        """Add each ``(message_id, payload)`` to ``stream`` unless that id was published
        there in the last ``dedupe_seconds``; returns how many were added."""
        if not items:
            return 0
        keys = [stream, stream + _DEDUPE_SUFFIX]
        head: list[Any] = [
            int(time.time() * 1000),
            self.dedupe_ms,
            int(maxlen or 0),
            self.field,
            # ids are unique within their source stream only; two groups (two models) may
            # both publish a result for the same message to one output stream
            f"{self.stream}:{self.group}:",
        ]
        with self._errors(f"publish to stream {stream!r} on"):
            # one round trip: each chunk is one script call (atomic), all of them pipelined
            pipe = self._redis.pipeline(transaction=False)
            for i in range(0, len(items), _CHUNK):
                packed = msgpack.packb(
                    [part for item in items[i : i + _CHUNK] for part in item], use_bin_type=False
                )
                self._publish_once(keys=keys, args=[*head, packed], client=pipe)
            return sum(int(n) for n in pipe.execute())

    def lag(self) -> int | None:
        """Entries the group has not acknowledged: not yet delivered plus pending."""
        with self._errors("read the group's lag on"):
            for info in self._redis.xinfo_groups(self.stream):
                if _text(info.get("name")) == self.group:
                    undelivered = info.get("lag")
                    pending = int(info.get("pending") or 0)
                    return None if undelivered is None else int(undelivered) + pending
        return None

    def pending(self) -> int:
        """Entries delivered to the group and not yet acknowledged (``XPENDING``)."""
        with self._errors("read pending entries on"):
            return int(self._redis.xpending(self.stream, self.group)["pending"])

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()

"""Redis Streams: a consumer in a consumer group (``XREADGROUP``, ``XACK``, ``XAUTOCLAIM``).

Each event is one stream entry whose ``field`` (default ``data``) holds the JSON object.
The group is created (with the stream, ``MKSTREAM``) when missing, at the stream's first
entry (``start: earliest``) or its end (``latest``).

A restarted consumer of the same name first re-reads its own pending entries (``XREADGROUP
... 0``): what it had fetched but not acknowledged when it died. Entries pending with any
consumer of the group for longer than ``claim_idle_ms`` are taken over with ``XAUTOCLAIM``
(a consumer that died for good, or restarted under another name).

Publishing is idempotent by message id: one Lua script adds the ids of a batch (as
``<source stream>:<id>``) to a sorted set beside the output stream
(``<stream>:adp-published``, scored by time and trimmed after
``dedupe_seconds``) and ``XADD`` s only the entries whose id was new, atomically, so a
redelivered message's result is not published twice. (On a Redis Cluster both keys must
share a slot: name the output stream with a hash tag, e.g. ``{out}:scores``.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from adp.errors import SourceError
from adp.redact import redact_url
from adp.stream.brokers.protocol import Message

__all__ = ["RedisStreamsBroker"]

_CHUNK = 500
_SOCKET_TIMEOUT = 60.0
_DEDUPE_SUFFIX = ":adp-published"

# KEYS[1] the output stream, KEYS[2] the sorted set of published ids.
# ARGV: now (ms), horizon (ms), maxlen (0: none), field, id prefix, then id, payload pairs.
_PUBLISH_ONCE = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
local added = 0
local maxlen = tonumber(ARGV[3])
for i = 6, #ARGV, 2 do
  if redis.call('ZADD', KEYS[2], 'NX', ARGV[1], ARGV[5] .. ARGV[i]) == 1 then
    if maxlen > 0 then
      redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'message_id', ARGV[i],
                 ARGV[4], ARGV[i + 1])
    else
      redis.call('XADD', KEYS[1], '*', 'message_id', ARGV[i], ARGV[4], ARGV[i + 1])
    end
    added = added + 1
  end
end
return added
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_time(entry_id: str) -> float | None:
    millis, sep, _ = entry_id.partition("-")
    return int(millis) / 1000.0 if sep and millis.isdigit() else None


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
        self._publish_once = self._redis.register_script(_PUBLISH_ONCE)

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
        out = []
        key = self.field.encode()
        for entry_id, fields in entries:
            mid = _text(entry_id)
            data = (fields or {}).get(key, b"")  # a deleted entry has no fields
            out.append(Message(mid, bytes(data), _entry_time(mid)))
        return out

    def _read(self, start_id: str, count: int, block: int | None) -> list[Message]:
        reply = self._redis.xreadgroup(
            self.group, self.consumer, {self.stream: start_id}, count=count, block=block
        )
        if isinstance(reply, dict):  # RESP3
            return self._messages(next(iter(reply.values()), []))
        return self._messages(reply[0][1] if reply else [])

    def fetch(self, max_events: int, wait_ms: int) -> list[Message]:
        """Up to ``max_events`` new entries (``XREADGROUP ... >``), blocking at most
        ``wait_ms`` (not at all when it is 0)."""
        with self._errors("read from"):
            return self._read(">", max_events, wait_ms if wait_ms > 0 else None)

    def ack(self, ids: Sequence[str]) -> None:
        """``XACK`` the ids (in chunks)."""
        with self._errors("acknowledge on"):
            for i in range(0, len(ids), 10_000):
                self._redis.xack(self.stream, self.group, *ids[i : i + 10_000])

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
            return self._messages(reply[1])

    def publish(
        self, stream: str, items: Sequence[tuple[str, bytes]], *, maxlen: int | None = None
    ) -> int:
        """Add each ``(message_id, payload)`` to ``stream`` unless that id was published
        there in the last ``dedupe_seconds``; returns how many were added."""
        added = 0
        with self._errors(f"publish to stream {stream!r} on"):
            for i in range(0, len(items), _CHUNK):
                args: list[Any] = [
                    int(time.time() * 1000),
                    self.dedupe_ms,
                    int(maxlen or 0),
                    self.field,
                    f"{self.stream}:",  # ids are unique within their source stream only
                ]
                for mid, payload in items[i : i + _CHUNK]:
                    args += [mid, payload]
                added += int(self._publish_once(keys=[stream, stream + _DEDUPE_SUFFIX], args=args))
        return added

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

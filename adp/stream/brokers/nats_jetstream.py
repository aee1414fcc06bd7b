"""NATS JetStream: a durable pull consumer, driven synchronously.

nats-py is asynchronous; this broker runs its client on a private event loop in a daemon
thread and waits for each call (``asyncio.run_coroutine_threadsafe``), so the stream
runner stays a plain loop. Each event is one message whose payload is the JSON object; its
id is the stream sequence, which stays the same when JetStream redelivers it.

The durable consumer is created when missing (explicit acks, ``ack_wait``, the ``start``
policy, the ``subject`` filter); an existing one is used as it is. A message not
acknowledged within ``ack_wait`` (its consumer died, a sink failed) is redelivered by the
server, to whichever client of the durable pulls next: :meth:`reclaim` has nothing to do.
Acknowledgements are sent and then flushed (a PING answered after them), so when
:meth:`ack` returns the server has them.

Publishing sets the ``Nats-Msg-Id`` header to ``<source stream>:<message id>``: JetStream
drops a second message with the same id within the target stream's ``duplicate_window``
(2 minutes by default), so a redelivered message's result is not published twice. The
target subject must be captured by a stream (``nats stream add``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from adp.errors import SourceError
from adp.redact import redact_url
from adp.stream.brokers.protocol import Message

__all__ = ["NatsJetStreamBroker"]

logger = logging.getLogger(__name__)
T = TypeVar("T")


class _LoopThread:
    """An asyncio event loop running in a daemon thread; :meth:`run` waits for a coroutine."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="adp-nats-loop", daemon=True
        )
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


async def _quiet_error(exc: Exception) -> None:
    # nats-py's default callback logs every reconnection attempt with a traceback
    logger.debug("NATS client error: %s", exc)


class NatsJetStreamBroker:
    """A durable pull consumer of the JetStream stream ``stream``.

    Parameters
    ----------
    url : str
        ``nats://host:4222`` (credentials in the URL are never shown).
    stream : str
        The JetStream stream name.
    durable : str
        The durable consumer's name (created when missing).
    subject : str, optional
        Filter subject for a new consumer; default every subject of the stream.
    start : {"earliest", "latest"}
        A new consumer's deliver policy: every stored message, or new ones only.
    ack_wait_seconds : float
        A new consumer's ack wait: unacknowledged messages are redelivered after it.
    max_ack_pending : int
        A new consumer's limit of delivered, unacknowledged messages (above the runner's
        in-flight bound, or the server would stall it).
    connect_timeout : float
        Seconds to wait for the server.
    """

    def __init__(
        self,
        url: str,
        stream: str,
        durable: str,
        *,
        subject: str | None = None,
        start: str = "earliest",
        ack_wait_seconds: float = 30.0,
        max_ack_pending: int = 10_000,
        connect_timeout: float = 3.0,
    ) -> None:
        self.stream, self.durable, self.subject = stream, durable, subject
        self._shown = redact_url(url) or "nats"
        self._timeout = max(5.0, 2 * connect_timeout)
        self._unacked: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._loop = _LoopThread()
        try:
            with self._errors("connect to"):
                self._nc, self._js, self._sub = self._loop.run(
                    self._open(url, start, ack_wait_seconds, max_ack_pending, connect_timeout),
                    timeout=self._timeout + connect_timeout * 3,
                )
        except BaseException:
            self._loop.close()
            raise

    def __repr__(self) -> str:
        return (
            f"NatsJetStreamBroker({self._shown!r}, stream={self.stream!r}, "
            f"durable={self.durable!r})"
        )

    async def _open(
        self,
        url: str,
        start: str,
        ack_wait: float,
        max_ack_pending: int,
        connect_timeout: float,
    ) -> tuple[Any, Any, Any]:
        import nats
        from nats.js import api
        from nats.js.errors import NotFoundError

        nc = await nats.connect(
            url,
            connect_timeout=connect_timeout,
            max_reconnect_attempts=5,
            error_cb=_quiet_error,
        )
        try:
            js = nc.jetstream(timeout=self._timeout)
            try:
                await js.stream_info(self.stream)
            except NotFoundError:
                raise SourceError(
                    f"there is no JetStream stream {self.stream!r} at {self._shown}: create it "
                    "(nats stream add) or fix source.stream"
                ) from None
            try:
                await js.consumer_info(self.stream, self.durable)
            except NotFoundError:
                policy = api.DeliverPolicy.ALL if start == "earliest" else api.DeliverPolicy.NEW
                config = api.ConsumerConfig(
                    name=self.durable,
                    durable_name=self.durable,
                    ack_policy=api.AckPolicy.EXPLICIT,
                    ack_wait=ack_wait,
                    deliver_policy=policy,
                    filter_subject=self.subject,
                    max_ack_pending=max_ack_pending,
                )
                await js.add_consumer(self.stream, config=config)
            sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        except BaseException:
            await nc.close()
            raise
        return nc, js, sub

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        import nats.errors

        try:
            yield
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            if isinstance(exc, SourceError):
                raise
            raise SourceError(
                f"cannot {doing} NATS at {self._shown} (stream {self.stream!r}, consumer "
                f"{self.durable!r}): {type(exc).__name__}: {exc}"
            ) from exc

    def fetch(self, max_events: int, wait_ms: int) -> list[Message]:
        """Pull up to ``max_events`` messages, waiting at most ``wait_ms`` (10 ms at least)."""
        with self._errors("fetch from"):
            msgs = self._loop.run(self._fetch(max_events, max(wait_ms, 10) / 1000.0))
        out = []
        with self._lock:
            for msg in msgs:
                meta = msg.metadata
                mid = str(meta.sequence.stream)
                self._unacked[mid] = msg  # a redelivery replaces the earlier delivery
                out.append(Message(mid, bytes(msg.data), meta.timestamp.timestamp()))
        return out

    async def _fetch(self, batch: int, timeout: float) -> list[Any]:
        try:
            return list(await self._sub.fetch(batch, timeout=timeout))
        except TimeoutError:  # nats' own and asyncio's: nothing came in time
            return []

    def ack(self, ids: Sequence[str]) -> None:
        """Acknowledge the messages: the server has applied the acks on return."""
        with self._lock:
            msgs = [self._unacked.pop(mid) for mid in ids if mid in self._unacked]
        if msgs:
            with self._errors("acknowledge on"):
                self._loop.run(self._ack(msgs), timeout=self._timeout * 2)

    async def _ack(self, msgs: list[Any]) -> None:
        # +ACK is fire-and-forget; the server applies a consumer's acks in order, so
        # waiting for its confirmation of the last one means it holds them all
        for msg in msgs[:-1]:
            await msg.ack()
        await msgs[-1].ack_sync(timeout=self._timeout)

    def reclaim(self, max_events: int) -> list[Message]:
        """Nothing: JetStream redelivers unacknowledged messages after the ack wait."""
        return []

    def publish(
        self, stream: str, items: Sequence[tuple[str, bytes]], *, maxlen: int | None = None
    ) -> int:
        """Publish each payload to the subject ``stream`` with ``Nats-Msg-Id`` set, so
        JetStream drops repeats; returns how many the server did not call duplicates.
        (``maxlen`` does not apply: the target stream's limits govern its size.)"""
        if not items:
            return 0
        with self._errors(f"publish to subject {stream!r} on"):
            acks = self._loop.run(self._publish(stream, items), timeout=self._timeout * 4)
        return sum(1 for ack in acks if not getattr(ack, "duplicate", False))

    async def _publish(self, subject: str, items: Sequence[tuple[str, bytes]]) -> list[Any]:
        out: list[Any] = []
        for i in range(0, len(items), 500):
            out += await asyncio.gather(
                *(
                    self._js.publish(
                        subject, payload, headers={"Nats-Msg-Id": f"{self.stream}:{mid}"}
                    )
                    for mid, payload in items[i : i + 500]
                )
            )
        return out

    def lag(self) -> int | None:
        """Messages the durable has not had acknowledged: not yet delivered plus pending."""
        with self._errors("read the consumer's lag on"):
            info = self._loop.run(
                self._js.consumer_info(self.stream, self.durable), timeout=self._timeout
            )
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    def close(self) -> None:
        """Close the connection (unacknowledged messages are redelivered after the ack
        wait) and stop the loop thread."""
        try:
            if not self._nc.is_closed:
                self._loop.run(self._nc.close(), timeout=self._timeout)
        except Exception:  # closing must not hide the error that brought us here
            logger.debug("closing the NATS connection failed", exc_info=True)
        finally:
            self._loop.close()

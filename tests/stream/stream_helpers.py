"""What the stream tests share: the brokers' addresses, event producers, a slow scorer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
FEATURES = ["f0", "f1", "f2", "f3"]


@dataclass
class Training:
    """A fitted detector, its training rows (also in Parquet) and its registered ref."""

    frame: pd.DataFrame
    path: Path
    detector: Any
    ref: str


def unique(prefix: str) -> str:
    """A name no other test (or earlier run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def events_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Gaussian events with a few far-out ones, a ``sensor`` key and a ``row`` number."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, len(FEATURES)))
    X[rng.random(rows) < 0.03] += 4.0
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["sensor"] = [f"s{i % 5}" for i in range(rows)]
    frame["row"] = np.arange(rows)
    return frame


def payloads(frame: pd.DataFrame) -> list[bytes]:
    """One JSON object per row."""
    return [json.dumps(record).encode() for record in frame.to_dict(orient="records")]


def xadd_all(redis_client: Any, stream: str, items: Sequence[bytes]) -> list[str]:
    """Append each payload under ``data``; returns the entry ids, in order."""
    pipe = redis_client.pipeline(transaction=False)
    for item in items:
        pipe.xadd(stream, {"data": item})
    return [i.decode() if isinstance(i, bytes) else i for i in pipe.execute()]


def nats_setup(streams: dict[str, list[str]]) -> None:
    """Create JetStream streams ``{name: subjects}`` (replacing any of the same name)."""

    async def main() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for name, subjects in streams.items():
            with contextlib.suppress(Exception):  # not there yet
                await js.delete_stream(name)
            await js.add_stream(name=name, subjects=subjects)
        await nc.close()

    asyncio.run(main())


def nats_publish(subject: str, items: Sequence[bytes]) -> list[int]:
    """Publish to JetStream; returns the stream sequences, in order."""

    async def main() -> list[int]:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        acks = [await js.publish(subject, item) for item in items]
        await nc.close()
        return [a.seq for a in acks]

    return asyncio.run(main())


def nats_read(stream: str) -> list[tuple[dict[str, Any], bytes]]:
    """Every message stored in ``stream``: (headers, payload)."""

    async def main() -> list[tuple[dict[str, Any], bytes]]:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            out.append((dict(msg.headers or {}), msg.data or b""))
        await nc.close()
        return out

    return asyncio.run(main())


def nats_delete(names: Sequence[str]) -> None:
    async def main() -> None:
        import nats

        nc = await nats.connect(NATS_URL)
        js = nc.jetstream()
        for name in names:
            with contextlib.suppress(Exception):  # already gone
                await js.delete_stream(name)
        await nc.close()

    asyncio.run(main())


class SlowScorer:
    """A fitted scorer that takes ``delay`` seconds per call (a cluster slower than the
    stream)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        return np.asarray(self.inner.decision_function(X), dtype=np.float64)


def spec_dict(stream: str, training: Training, **overrides: Any) -> dict[str, Any]:
    """A Redis stream spec scoring ``stream`` with the registered model."""
    spec: dict[str, Any] = {
        "name": "test",
        "source": {"kind": "redis", "url": REDIS_URL, "stream": stream, "claim_idle_ms": 500},
        "model": training.ref,
        "key": ["sensor", "row"],
        "threshold": {"kind": "fitted", "source": {"uri": str(training.path)}},
        "sinks": {"stream": {"stream": f"{stream}-out"}},
        "dead_letter": {"stream": f"{stream}-dead"},
        "batch": {"max_events": 200, "max_wait_ms": 50, "max_in_flight": 2},
    }
    spec.update(overrides)
    return spec

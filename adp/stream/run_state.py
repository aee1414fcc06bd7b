"""What a stream run did (:class:`StreamStats`) and how it is asked to stop (:class:`Stopper`)."""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Stopper", "StreamStats"]


@dataclass
class StreamStats:
    """What a run did.

    Attributes
    ----------
    events : int
        Messages taken from the source (reclaimed ones included, dead letters included).
    results : int
        Results committed to the sinks (and their messages acknowledged).
    dead_letters : int
        Messages sent to the dead-letter stream.
    anomalies : int
        Results flagged.
    batches : int
        Micro-batches completed.
    reclaimed : int
        Messages taken over from a dead consumer (or this one's previous life).
    max_in_flight : int
        The most batches scored at once.
    drift_alerts : int
        Times drift was found.
    threshold : float
        The threshold after the last batch.
    seconds : float
        How long the run took.
    stopped_by : str
        ``"signal SIGTERM"``, ``"idle"``, ``"max_events"``, ``"stop"``.
    """

    events: int = 0
    results: int = 0
    dead_letters: int = 0
    anomalies: int = 0
    batches: int = 0
    reclaimed: int = 0
    max_in_flight: int = 0
    drift_alerts: int = 0
    threshold: float = math.nan
    seconds: float = 0.0
    stopped_by: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (an infinite threshold as ``None``)."""
        out = asdict(self)
        out["threshold"] = self.threshold if math.isfinite(self.threshold) else None
        return out


class Stopper:
    """A stop request shared by a runner and whoever stops it (a signal handler, a
    thread): :meth:`stop` sets the event once, keeping the first reason."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = "stop"

    def stop(self, reason: str = "stop") -> None:
        """Ask the runner to stop, for ``reason`` (the first one given is kept)."""
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self.event.is_set()

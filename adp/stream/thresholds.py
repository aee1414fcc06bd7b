"""Stream thresholds: the model's fitted one, or adaptive ones over the recent scores.

A threshold is applied per micro-batch: every row of a batch is flagged against the value
the threshold had before the batch (a row is an anomaly when its score is at least the
threshold, as in batch jobs), then the batch's scores update it. Adaptive thresholds
therefore depend on the history and on batch boundaries; scores never do.

- :class:`FixedThreshold`: one value (the fitted global threshold, or a fixed score).
- :class:`RollingQuantile`: the ``q`` quantile of the last ``window`` scores.
- :class:`SpotThreshold`: SPOT (Siffer, Fouque, Termier, Largouet, "Anomaly Detection in
  Streams with Extreme Value Theory", KDD 2017) over a sliding window: above an initial
  threshold ``t`` (the ``level`` quantile of the window's scores), the excesses follow a
  generalized Pareto distribution whose shape and scale are estimated by the method of
  moments; the threshold is the score exceeded with probability ``q``. As in SPOT, scores
  flagged as anomalies do not update the window.

Adaptive thresholds start from reference scores (the training scores when the spec has a
batch source) and otherwise flag nothing (threshold ``+inf``) until ``warmup`` scores came.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

__all__ = [
    "FixedThreshold",
    "RollingQuantile",
    "SpotThreshold",
    "StreamThreshold",
    "gpd_quantile",
]


class StreamThreshold(Protocol):
    """A threshold that may learn from the scores it flags."""

    kind: str

    @property
    def value(self) -> float:
        """The threshold for the next batch (``inf`` flags nothing)."""
        ...

    def update(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Learn from a batch's scores and the flags they got."""
        ...


class FixedThreshold:
    """A threshold that never changes (``kind``: ``"fitted"`` or ``"fixed"``)."""

    def __init__(self, value: float, kind: str = "fixed") -> None:
        self.kind = kind
        self._value = float(value)

    @property
    def value(self) -> float:
        return self._value

    def update(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Nothing to learn."""


class _Window:
    """The last ``size`` values, in a ring buffer."""

    def __init__(self, size: int, initial: np.ndarray | None = None) -> None:
        self._buffer = np.empty(size, dtype=np.float64)
        self._count = 0
        self._next = 0
        if initial is not None and len(initial):
            self.extend(np.asarray(initial, dtype=np.float64))

    def __len__(self) -> int:
        return self._count

    def extend(self, values: np.ndarray) -> None:
        size = len(self._buffer)
        values = values[-size:]
        n = len(values)
        end = self._next + n
        if end <= size:
            self._buffer[self._next : end] = values
        else:
            first = size - self._next
            self._buffer[self._next :] = values[:first]
            self._buffer[: n - first] = values[first:]
        self._next = end % size
        self._count = min(size, self._count + n)

    def values(self) -> np.ndarray:
        return self._buffer[: self._count] if self._count < len(self._buffer) else self._buffer


class RollingQuantile:
    """The ``q`` quantile of the last ``window`` scores.

    Parameters
    ----------
    q : float
        In (0, 1), e.g. 0.995.
    window : int
        Scores kept.
    warmup : int
        Scores needed before the first threshold (``inf`` until then).
    initial : ndarray, optional
        Reference scores to start from (the most recent ``window`` are kept).
    """

    kind = "quantile"

    def __init__(
        self, q: float, window: int, warmup: int = 100, initial: np.ndarray | None = None
    ) -> None:
        self.q, self.warmup = float(q), int(warmup)
        self._window = _Window(int(window), initial)
        self._value = self._compute()

    def _compute(self) -> float:
        if len(self._window) < self.warmup:
            return math.inf
        return float(np.quantile(self._window.values(), self.q))

    @property
    def value(self) -> float:
        return self._value

    def update(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Add every finite score of the batch, then recompute."""
        scores = np.asarray(scores, dtype=np.float64)
        self._window.extend(scores[np.isfinite(scores)])
        self._value = self._compute()


def gpd_quantile(excesses: np.ndarray, threshold: float, q: float, n: int) -> float:
    """SPOT's threshold: the score exceeded with probability ``q``.

    Parameters
    ----------
    excesses : ndarray
        Scores above ``threshold``, minus it (positive).
    threshold : float
        The initial threshold ``t``.
    q : float
        The risk: the probability of a normal score above the result.
    n : int
        Scores observed (the excesses are the part of them above ``t``).

    Returns
    -------
    float
        ``t + sigma / gamma * ((q n / N_t) ** -gamma - 1)`` with the generalized Pareto
        shape ``gamma`` and scale ``sigma`` from the excesses' mean and variance (method
        of moments); ``t - sigma * log(q n / N_t)`` when ``gamma`` is about 0.
    """
    excesses = np.asarray(excesses, dtype=np.float64)
    count = len(excesses)
    mean = float(excesses.mean())
    variance = float(excesses.var())
    if variance <= 0 or mean <= 0:
        return threshold + (mean if mean > 0 else 0.0)
    ratio = mean * mean / variance
    gamma = 0.5 * (1.0 - ratio)
    sigma = 0.5 * mean * (ratio + 1.0)
    r = q * n / count
    if abs(gamma) < 1e-8:
        return threshold - sigma * math.log(r)
    return threshold + sigma / gamma * (r ** (-gamma) - 1.0)


class SpotThreshold:
    """SPOT over a sliding window of normal scores (see the module).

    Parameters
    ----------
    q : float
        The risk, e.g. 1e-4: the probability that a normal score exceeds the threshold.
    level : float
        The initial threshold's quantile, e.g. 0.98.
    window : int
        Normal scores kept.
    warmup : int
        Scores needed before the first threshold (``inf`` until then).
    initial : ndarray, optional
        Reference scores to start from.
    """

    kind = "spot"
    #: Fewest excesses to fit a tail on; with fewer the initial threshold is used.
    MIN_EXCESSES = 10

    def __init__(
        self,
        q: float,
        level: float = 0.98,
        window: int = 10_000,
        warmup: int = 100,
        initial: np.ndarray | None = None,
    ) -> None:
        self.q, self.level, self.warmup = float(q), float(level), int(warmup)
        self._window = _Window(int(window), initial)
        self._value = self._compute()

    def _compute(self) -> float:
        n = len(self._window)
        if n < self.warmup:
            return math.inf
        scores = self._window.values()
        t = float(np.quantile(scores, self.level))
        excesses = scores[scores > t] - t
        if len(excesses) < self.MIN_EXCESSES:
            return float(scores.max()) if len(excesses) else t
        return max(t, gpd_quantile(excesses, t, self.q, n))

    @property
    def value(self) -> float:
        return self._value

    def update(self, scores: np.ndarray, flags: np.ndarray) -> None:
        """Add the batch's finite, unflagged scores, then refit the tail."""
        scores = np.asarray(scores, dtype=np.float64)
        keep = np.isfinite(scores) & ~np.asarray(flags, dtype=bool)
        self._window.extend(scores[keep])
        self._value = self._compute()

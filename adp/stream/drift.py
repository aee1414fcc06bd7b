"""Score drift: the recent scores of a stream against the training scores.

Every ``every`` scores, the last ``window`` scores are compared with the reference (a
sample of the training or calibration source's scores):

- ``psi``: the population stability index over the reference's deciles,
  ``sum((a - e) * ln(a / e))`` of the shares ``a`` (recent) and ``e`` (reference) per
  bin; drift above ``limit`` (default 0.2, the usual "significant shift");
- ``ks``: the two-sample Kolmogorov-Smirnov test; drift when its p-value is below
  ``limit`` (default 0.001).

:class:`DriftMonitor` reports each check; the runner raises a metric and writes an audit
record when the state changes (drift found, drift over).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DriftCheck", "DriftMonitor", "population_stability_index"]

_DEFAULT_LIMITS = {"psi": 0.2, "ks": 0.001}
_EPS = 1e-4


def population_stability_index(reference: np.ndarray, recent: np.ndarray, bins: int = 10) -> float:
    """PSI of ``recent`` against ``reference`` over the reference's quantile bins.

    Bins with no reference or recent score get a share of ``1e-4`` (so one empty bin does
    not make the index infinite).
    """
    reference = np.asarray(reference, dtype=np.float64)
    recent = np.asarray(recent, dtype=np.float64)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(
        np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1
    )
    actual = np.bincount(np.searchsorted(edges, recent, side="right"), minlength=len(edges) + 1)
    e = np.maximum(expected / max(len(reference), 1), _EPS)
    a = np.maximum(actual / max(len(recent), 1), _EPS)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftCheck:
    """One comparison: the ``statistic`` (PSI, or the KS p-value), whether it is ``drifted``,
    and how many recent scores it used."""

    method: str
    statistic: float
    limit: float
    drifted: bool
    scores: int


class DriftMonitor:
    """Compare the last ``window`` scores with ``reference`` every ``every`` scores.

    Parameters
    ----------
    reference : ndarray
        Training (or calibration) scores.
    method : {"psi", "ks"}
    window : int
        Recent scores compared.
    every : int
        Scores between checks.
    limit : float, optional
        Drift above this PSI, or below this KS p-value.
    """

    def __init__(
        self,
        reference: np.ndarray,
        method: str = "psi",
        window: int = 5000,
        every: int = 5000,
        limit: float | None = None,
    ) -> None:
        self.reference = np.asarray(reference, dtype=np.float64)
        self.method, self.window, self.every = method, int(window), int(every)
        self.limit = float(limit if limit is not None else _DEFAULT_LIMITS[method])
        self._recent = np.empty(0, dtype=np.float64)
        self._since = 0
        self.drifted = False

    def observe(self, scores: np.ndarray) -> DriftCheck | None:
        """Add a batch's scores; return a check when one is due (``None`` otherwise)."""
        scores = np.asarray(scores, dtype=np.float64)
        self._recent = np.concatenate([self._recent, scores[np.isfinite(scores)]])[-self.window :]
        self._since += len(scores)
        if self._since < self.every or len(self._recent) < min(self.window, 100):
            return None
        self._since = 0
        if self.method == "psi":
            statistic = population_stability_index(self.reference, self._recent)
            drifted = statistic > self.limit
        else:
            from scipy.stats import ks_2samp

            statistic = float(ks_2samp(self._recent, self.reference).pvalue)
            drifted = statistic < self.limit
        self.drifted = drifted
        return DriftCheck(self.method, statistic, self.limit, drifted, len(self._recent))

"""Global thresholds over all scored rows, computed on the workers.

``Contamination(0.05)`` flags the 5% highest scores of the *whole* dataset, exactly up to
ties: the threshold is the k-th largest score, ``k = ceil(fraction * n)``, and a row is an
anomaly when its score is at least the threshold. It is found in three small passes over
the score column, with memory bounded by the histogram size, never by the row count:

1. per partition: count, minimum and maximum;
2. per partition: a histogram over ``[min, max]``; summed, it gives the bin that holds the
   k-th largest score and how many scores lie above that bin;
3. per partition: the distinct values inside that bin with their counts (at most as many
   as still needed); merged, they give the exact k-th largest value.

Every pass is a dask task per partition followed by a tree reduction, so the whole result
is one lazy :class:`~dask.delayed.Delayed` float.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect.contamination import check_contamination
from adp.errors import ConfigError, DataError, DetectorError
from adp.graphs import flat_delayed, tree_reduce


def top_count(fraction: float, n: int) -> int:
    """How many of ``n`` rows a contamination ``fraction`` flags: ``ceil(fraction * n)``, at
    least 1 (a hair below the ceiling, so ``0.1 * 30`` is 3, not 4)."""
    return max(1, math.ceil(fraction * n - 1e-9))


def kth_largest_array(scores: np.ndarray, fraction: float) -> float:
    """:func:`kth_largest` of a small in-memory array: the ``top_count(fraction, n)``-th
    largest score, the threshold a contamination ``fraction`` sets on ``scores``.

    Parameters
    ----------
    scores : ndarray
        One-dimensional, non-empty scores.
    fraction : float
        The share of rows to flag.

    Returns
    -------
    float
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if values.size == 0:
        raise DataError("cannot set a contamination threshold on an empty array of scores")
    k = top_count(fraction, values.size)
    return float(np.partition(values, values.size - k)[values.size - k])


#: Computes a pass's small result (a Delayed) before the next pass is built; see
#: :func:`kth_largest`.
Step = Callable[[Delayed], Any]


class Threshold(Protocol):
    """A rule that turns the score column of a dataset into one global threshold."""

    def resolve(self, scores: dd.Series, step: Step | None = None) -> Delayed: ...


@dataclass(frozen=True)
class Contamination:
    """Flag the ``fraction`` highest-scoring rows of the whole dataset.

    Parameters
    ----------
    fraction : float
        In ``(0, 0.5]``.
    bins : int
        Histogram bins per refinement pass (``adp.score.threshold-bins``).
    """

    fraction: float
    bins: int = 4096

    def __post_init__(self) -> None:
        if isinstance(check_contamination(self.fraction), str):
            raise DetectorError(
                f"contamination must be a number in (0, 0.5] here, got {self.fraction!r}; "
                "use AutoThreshold for 'auto'"
            )

    def resolve(self, scores: dd.Series, step: Step | None = None) -> Delayed:
        return kth_largest(scores, self.fraction, bins=self.bins, step=step)


@dataclass(frozen=True)
class FixedScore:
    """Flag every row whose score is at least ``value``."""

    value: float

    def resolve(self, scores: dd.Series, step: Step | None = None) -> Delayed:
        return dask.delayed(float(self.value))


def _values(part: pd.Series) -> np.ndarray:
    values = np.asarray(part, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError(
            f"{int((~np.isfinite(values)).sum())} scores are NaN or infinite: check the "
            "features for missing or infinite values, and for constant columns (PCA's score "
            "divides by each component's variance); drop them or choose another detector"
        )
    return values


def _stats(part: pd.Series) -> tuple[int, float, float]:
    values = _values(part)
    if values.size == 0:
        return 0, math.inf, -math.inf
    return int(values.size), float(values.min()), float(values.max())


def _merge_stats(items: Sequence[tuple[int, float, float]]) -> tuple[int, float, float]:
    return (
        sum(i[0] for i in items),
        min(i[1] for i in items),
        max(i[2] for i in items),
    )


def _histogram(part: pd.Series, lo: float, hi: float, bins: int) -> np.ndarray:
    values = _values(part)
    if values.size == 0 or hi <= lo:
        counts = np.zeros(bins, dtype=np.int64)
        counts[-1] = values.size
        return counts
    index = _bin_index(values, lo, hi, bins)
    return np.bincount(index, minlength=bins).astype(np.int64)


def _sum_arrays(items: Sequence[np.ndarray]) -> np.ndarray:
    return np.sum(np.stack(items), axis=0)


@dataclass(frozen=True)
class _Window:
    """The histogram bin that holds the k-th largest value."""

    bin_index: int
    needed: int  # how many values inside the bin are at or above the answer


def _bin_index(values: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    index = np.floor((values - lo) / (hi - lo) * bins).astype(np.int64)
    np.clip(index, 0, bins - 1, out=index)
    return index


def _locate(stats: tuple[int, float, float], hist: np.ndarray, fraction: float) -> _Window | float:
    n, lo, hi = stats
    if n == 0:
        raise DataError("cannot set a contamination threshold on an empty dataset")
    k = top_count(fraction, n)
    if hi <= lo:
        return float(hi)
    above = np.cumsum(hist[::-1])  # above[i]: values in the top i + 1 bins
    top_index = int(np.searchsorted(above, k))  # fewest top bins holding k values
    count_above = int(above[top_index - 1]) if top_index > 0 else 0
    return _Window(hist.size - 1 - top_index, k - count_above)


def _candidates(
    part: pd.Series, window: _Window | float, lo: float, hi: float, bins: int
) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(window, _Window):
        return np.empty(0), np.empty(0, dtype=np.int64)
    values = _values(part)
    # The same arithmetic as _histogram, so no value is lost at a bin edge to rounding.
    inside = values[_bin_index(values, lo, hi, bins) == window.bin_index]
    uniques, counts = np.unique(inside, return_counts=True)
    uniques, counts = uniques[::-1], counts[::-1]  # descending
    keep = int(np.searchsorted(np.cumsum(counts), window.needed)) + 1
    return uniques[:keep], counts[:keep]


def _merge_candidates(
    items: Sequence[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    values = np.concatenate([i[0] for i in items]) if items else np.empty(0)
    counts = np.concatenate([i[1] for i in items]) if items else np.empty(0, dtype=np.int64)
    if values.size == 0:
        return values, counts
    uniques, inverse = np.unique(values, return_inverse=True)
    summed = np.bincount(inverse, weights=counts).astype(np.int64)
    return uniques[::-1], summed[::-1]


def _pick(candidates: tuple[np.ndarray, np.ndarray], window: _Window | float) -> float:
    if not isinstance(window, _Window):
        return float(window)
    values, counts = candidates
    position = int(np.searchsorted(np.cumsum(counts), window.needed))
    return float(values[position])


def kth_largest(
    scores: dd.Series, fraction: float, bins: int = 4096, step: Step | None = None
) -> Delayed:
    """The exact ``ceil(fraction * n)``-th largest value of ``scores``, lazily.

    Parameters
    ----------
    scores : dask.dataframe.Series
        Finite float scores.
    fraction : float
        Share of rows at or above the returned value (exact when there are no ties).
    bins : int
        Histogram bins; memory per task is ``O(bins)`` plus the values in one bin.
    step : callable, optional
        Computes each pass's small result (for example ``lambda d: client.compute(d).result()``)
        before the next pass is built. Computed in one graph, the passes share the score
        partitions, so dask keeps every partition in memory until the last pass: fine for
        scores that are computed anyway, but for scores read back from storage memory then
        grows with the rows. With ``step``, each pass reads them again and holds nothing.

    Returns
    -------
    dask.delayed.Delayed
        Computes to a float.
    """
    materialise: Step = step or (lambda value: value)
    parts = scores.to_delayed()
    stats = flat_delayed(
        materialise(tree_reduce([dask.delayed(_stats)(p) for p in parts], _merge_stats))
    )
    lo = dask.delayed(operator.getitem)(stats, 1)
    hi = dask.delayed(operator.getitem)(stats, 2)
    hists = [dask.delayed(_histogram)(p, lo, hi, bins) for p in parts]
    window = flat_delayed(
        materialise(dask.delayed(_locate)(stats, tree_reduce(hists, _sum_arrays), fraction))
    )
    candidates = [dask.delayed(_candidates)(p, window, lo, hi, bins) for p in parts]
    return dask.delayed(_pick)(tree_reduce(candidates, _merge_candidates), window)


def _flag_partition(part: pd.DataFrame, threshold: float) -> pd.DataFrame:
    out = part.copy()
    out["is_anomaly"] = (out["score"].to_numpy() >= threshold).astype(bool)
    return out


def flag(scored: dd.DataFrame, threshold: Delayed | float) -> dd.DataFrame:
    """Add ``is_anomaly`` (``score >= threshold``) to a scored frame, lazily."""
    meta = scored._meta.assign(is_anomaly=pd.Series(dtype=bool))
    return scored.map_partitions(_flag_partition, threshold, meta=meta)


_MAD_CONSISTENCY = 0.6745  # Phi^-1(0.75): MAD / 0.6745 estimates the standard deviation
AUTO_METHODS = ("mad", "iqr")


def _abs_deviation(part: pd.Series, center: float) -> pd.Series:
    return (part - center).abs()


def _robust_limit(median: float, mad: float, factor: float) -> float:
    if mad > 0:
        return float(median + factor * mad / _MAD_CONSISTENCY)
    return float(np.nextafter(median, np.inf))  # no spread: flag only scores above the median


def _fence_limit(q1: float, q3: float, factor: float) -> float:
    if q3 > q1:
        return float(q3 + factor * (q3 - q1))
    return float(np.nextafter(q3, np.inf))


@dataclass(frozen=True)
class AutoThreshold:
    """A threshold that needs no contamination: a robust outlier rule on the score column.

    Both rules are invariant under any increasing affine map of the scores, so they give the
    same flags on raw and on standardised scores; their quantiles are exact global ones
    (:func:`kth_largest`), computed on the workers.

    Parameters
    ----------
    method : {"mad", "iqr"}
        ``"mad"``: Iglewicz and Hoaglin's modified z-score (1993): flag a score whose robust
        z ``0.6745 * (s - median) / MAD`` is at least ``factor`` (default 3.5).
        ``"iqr"``: Tukey's upper fence (1977): flag a score at least
        ``Q3 + factor * (Q3 - Q1)`` (default 1.5).
    factor : float, optional
        The rule's multiplier.
    bins : int
        Histogram bins per pass of each exact quantile.
    """

    method: str = "mad"
    factor: float | None = None
    bins: int = 4096

    def __post_init__(self) -> None:
        if self.method not in AUTO_METHODS:
            raise ConfigError(
                f"unknown automatic threshold method {self.method!r}; "
                f"valid: {', '.join(AUTO_METHODS)}"
            )
        if self.factor is not None and not self.factor > 0:
            raise ConfigError(f"the automatic threshold factor must be > 0, got {self.factor!r}")

    def resolve(self, scores: dd.Series, step: Step | None = None) -> Delayed:
        if self.method == "mad":
            factor = 3.5 if self.factor is None else float(self.factor)
            median = kth_largest(scores, 0.5, bins=self.bins, step=step)
            if step is not None:
                median = step(median)
            deviation = scores.map_partitions(_abs_deviation, median, meta=scores._meta)
            mad = kth_largest(deviation, 0.5, bins=self.bins, step=step)
            return dask.delayed(_robust_limit)(median, mad, factor)
        factor = 1.5 if self.factor is None else float(self.factor)
        q3 = kth_largest(scores, 0.25, bins=self.bins, step=step)
        q1 = kth_largest(scores, 0.75, bins=self.bins, step=step)
        return dask.delayed(_fence_limit)(q1, q3, factor)


def from_spec(
    contamination: float | str | None = None,
    score: float | None = None,
    auto_method: str = "mad",
) -> Threshold:
    """Build a threshold rule from the fields a job spec or API call gives.

    Parameters
    ----------
    contamination : float or "auto", optional
        A share of rows in ``(0, 0.5]`` (:class:`Contamination`), or ``"auto"`` for an
        :class:`AutoThreshold` that needs no prior knowledge of the share.
    score : float, optional
        A fixed score threshold (:class:`FixedScore`).
    auto_method : {"mad", "iqr"}
        The rule ``contamination="auto"`` uses.

    Raises
    ------
    adp.errors.ConfigError
        Unless exactly one of ``contamination`` and ``score`` is given, or for an unknown
        ``auto_method``.
    adp.errors.DetectorError
        For a contamination outside ``(0, 0.5]`` that is not ``"auto"``.
    """
    if (contamination is None) == (score is None):
        raise ConfigError("give exactly one of threshold.contamination or threshold.score")
    from adp.config import settings

    bins = settings().score.threshold_bins
    if score is not None:
        return FixedScore(float(score))
    share = check_contamination(contamination, "threshold.contamination")
    if isinstance(share, str):
        return AutoThreshold(auto_method, bins=bins)
    return Contamination(share, bins=bins)

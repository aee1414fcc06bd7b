"""Combining the scores of several fitted models into one: normalisation and combination.

Raw scores of different detectors live on different scales, so each member's scores are
first normalised with statistics of *its training sample* (never of the scored batch, so a
row's combined score still depends only on the fitted models and the row):

- ``"zscore"``: ``(s - mean) / std`` of the member's scores of its training rows;
- ``"rank"``: the share of the member's training scores at or below ``s`` (its empirical
  CDF), in ``[0, 1]``.

The normalised member scores are then combined per row (PyOD's ``pyod.models.combination``
and Aggarwal & Sathe, *Theoretical foundations and algorithms for outlier ensembles*, 2015):
``average``, ``max``, ``median``, ``aom`` (average of the maxima of buckets of members),
``moa`` (maximum of the bucket averages) and ``vote`` (the share of members whose score
reaches their own training threshold at their contamination).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from adp.detect.rank_index import RankIndex
from adp.detect.scorers import Scorer
from adp.errors import DetectorError

COMBINATIONS = ("average", "max", "median", "aom", "moa", "vote")
NORMALIZATIONS = ("zscore", "rank")


@dataclass(frozen=True)
class TrainingStats:
    """What normalisation needs to know about a member's scores of its training rows."""

    mean: float
    std: float
    sorted_scores: np.ndarray
    vote_threshold: float  # raw score at the member's (1 - contamination) training quantile

    @classmethod
    def from_scores(cls, scores: np.ndarray, contamination: float) -> TrainingStats:
        scores = np.asarray(scores, dtype=np.float64)
        std = float(scores.std())
        return cls(
            mean=float(scores.mean()),
            std=std if std > 0 and np.isfinite(std) else 1.0,
            sorted_scores=np.sort(scores),
            vote_threshold=float(np.quantile(scores, 1 - contamination)),
        )

    def rank_index(self) -> RankIndex:
        """The bucket index of ``sorted_scores`` (built on first use, never pickled)."""
        index: RankIndex | None = self.__dict__.get("_rank_index")
        if index is None:
            index = RankIndex(self.sorted_scores)
            object.__setattr__(self, "_rank_index", index)  # a cache: frozen otherwise
        return index

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_rank_index"}

    def normalize(self, scores: np.ndarray, how: str) -> np.ndarray:
        """``scores`` on the common scale: ``"zscore"`` or ``"rank"`` (the share of the
        training scores at or below each score; counted through :meth:`rank_index`, equal
        to ``searchsorted(sorted_scores, scores, side="right") / n``)."""
        if how == "zscore":
            return (scores - self.mean) / self.std
        n = self.sorted_scores.size
        return self.rank_index().count_at_or_below(scores) / n


def check_combination(combination: str, normalization: str) -> None:
    """Raise :class:`~adp.errors.DetectorError` for an unknown combination or normalisation."""
    if combination not in COMBINATIONS:
        raise DetectorError(
            f"unknown combination {combination!r}; valid: {', '.join(COMBINATIONS)}"
        )
    if normalization not in NORMALIZATIONS:
        raise DetectorError(
            f"unknown normalization {normalization!r}; valid: {', '.join(NORMALIZATIONS)}"
        )


def buckets(n_members: int, n_buckets: int, random_state: int | None) -> list[np.ndarray]:
    """Split member indices into ``n_buckets`` groups after a seeded shuffle (for aom/moa)."""
    n_buckets = max(1, min(n_buckets, n_members))
    order = np.random.default_rng(random_state).permutation(n_members)
    return [np.sort(b) for b in np.array_split(order, n_buckets)]


def combine(
    normalized: np.ndarray, combination: str, groups: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """Combine normalised member scores (rows x members) into one score per row."""
    if combination == "average" or combination == "vote":
        return normalized.mean(axis=1)
    if combination == "max":
        return normalized.max(axis=1)
    if combination == "median":
        return np.median(normalized, axis=1)
    groups = groups or [np.arange(normalized.shape[1])]
    if combination == "aom":
        return np.mean([normalized[:, g].max(axis=1) for g in groups], axis=0)
    if combination == "moa":
        return np.max([normalized[:, g].mean(axis=1) for g in groups], axis=0)
    raise DetectorError(f"unknown combination {combination!r}; valid: {', '.join(COMBINATIONS)}")


class EnsembleScorer:
    """Score rows with several fitted scorers and combine their normalised scores.

    Parameters
    ----------
    scorers : sequence of Scorer
        The fitted members.
    stats : sequence of TrainingStats
        Each member's training-score statistics, in the same order.
    combination : str
        One of :data:`COMBINATIONS`.
    normalization : {"zscore", "rank"}
        How member scores are put on one scale (ignored by ``vote``).
    n_buckets : int
        Buckets for ``aom`` and ``moa``.
    random_state : int, optional
        Seed of the bucket assignment.
    """

    def __init__(
        self,
        scorers: Sequence[Scorer],
        stats: Sequence[TrainingStats],
        combination: str = "average",
        normalization: str = "zscore",
        n_buckets: int = 5,
        random_state: int | None = None,
    ) -> None:
        check_combination(combination, normalization)
        if len(scorers) != len(stats) or not scorers:
            raise DetectorError("an ensemble needs one or more members, each with its stats")
        self.scorers = list(scorers)
        self.stats = list(stats)
        self.combination = combination
        self.normalization = normalization
        self.groups_ = buckets(len(self.scorers), n_buckets, random_state)

    def member_scores(self, X: np.ndarray) -> np.ndarray:
        """Normalised member scores (rows x members); for ``vote``, each member's 0/1 vote."""
        columns = []
        for scorer, stats in zip(self.scorers, self.stats, strict=True):
            raw = np.asarray(scorer.decision_function(X), dtype=np.float64)
            if self.combination == "vote":
                columns.append((raw >= stats.vote_threshold).astype(np.float64))
            else:
                columns.append(stats.normalize(raw, self.normalization))
        return np.column_stack(columns)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The combined score of each row (higher is more anomalous)."""
        return combine(self.member_scores(X), self.combination, self.groups_)

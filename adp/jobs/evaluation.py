"""Precision and recall of the flags against a known truth column, counted per partition."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd


@dataclass
class Evaluation:
    """Counts of true and false positives and negatives, and recall per anomaly kind."""

    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (found, total)

    @property
    def precision(self) -> float:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else 0.0

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 0.0

    def recall_by_kind(self) -> dict[str, float]:
        return {k: found / total for k, (found, total) in sorted(self.kinds.items()) if total}

    def merge(self, other: Evaluation) -> Evaluation:
        kinds = dict(self.kinds)
        for k, (found, total) in other.kinds.items():
            f0, t0 = kinds.get(k, (0, 0))
            kinds[k] = (f0 + found, t0 + total)
        return Evaluation(
            self.true_positives + other.true_positives,
            self.false_positives + other.false_positives,
            self.false_negatives + other.false_negatives,
            kinds,
        )

    @classmethod
    def combine(cls, parts: Iterable[Evaluation]) -> Evaluation:
        total = cls()
        for part in parts:
            total = total.merge(part)
        return total


def evaluate_partition(part: pd.DataFrame, label: str, kind: str | None = None) -> Evaluation:
    """Count the flags of one scored partition against its ``label`` column."""
    truth = part[label].astype(bool).to_numpy()
    flagged = part["is_anomaly"].to_numpy()
    kinds: dict[str, tuple[int, int]] = {}
    if kind is not None:
        positives = part.loc[truth, [kind, "is_anomaly"]]
        for name, group in positives.groupby(kind, observed=True):
            kinds[str(name)] = (int(group["is_anomaly"].sum()), len(group))
    return Evaluation(
        int((truth & flagged).sum()),
        int((~truth & flagged).sum()),
        int((truth & ~flagged).sum()),
        kinds,
    )

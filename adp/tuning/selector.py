"""Label-free model selection learned from labelled benchmark datasets.

The idea is MetaOD's (Zhao, Rossi & Akoglu, NeurIPS 2021): a detector that did well on
labelled datasets *like* a new one probably does well on it too. ADP's learner is a simpler
one that measures as well on few benchmark datasets: a kernel-weighted nearest-datasets
ranker in meta-feature space (:mod:`adp.tuning.metafeatures`).

For a new dataset's meta-features, each benchmark dataset of the performance table
(:mod:`adp.tuning.perftable`) gets a weight ``exp(-dist^2 / 2h^2)``, the distance taken
between standardised meta-features, the bandwidth ``h`` the distance to the
``neighbours``-th nearest benchmark dataset (times ``bandwidth``), so that the evidence
comes from the few most similar datasets. For each candidate, over those weights:

* ``gain``: the expected ROC-AUC difference to the default isolation forest;
* ``downside``: the expected loss where it did worse than the default;
* ``utility = gain - risk * downside``; the default's utility is 0;
* ``confidence``: the weighted share of benchmark datasets where it beat the default.

The pick is the candidate of highest utility **unless** it falls back to the default
isolation forest, which it does, saying why, when (1) the dataset is unlike every benchmark
dataset (``support = exp(-d^2 / 2m^2)`` below ``min_support``, ``d`` the distance to the
nearest benchmark dataset, ``m`` the median distance between them), (2) no candidate's utility
exceeds ``margin``, (3) the pick's confidence is below ``min_confidence``, or (4) with the
criteria check, Model Centrality (:mod:`adp.tuning.selection`) over the best-ranked
candidates, fitted on the landmark sample, ranks the pick below the default: the learned
evidence and the unsupervised criterion must agree before ADP moves away from the default.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adp.errors import ConfigError
from adp.tuning.metafeatures import NAMES, MetaFeatures
from adp.tuning.perftable import DEFAULT_ID, PerformanceTable

FAILED_GAIN = -0.5
"""The ROC-AUC difference counted for a candidate that failed on a benchmark dataset."""


@dataclass
class Prediction:
    """The selector's evidence for every candidate on one dataset."""

    candidates: list[str]
    gain: np.ndarray
    downside: np.ndarray
    utility: np.ndarray
    confidence: np.ndarray
    weights: dict[str, float]
    support: float


@dataclass
class Selection:
    """What the selector chose for a dataset, and on what evidence.

    Attributes
    ----------
    choice : str
        The chosen candidate's id (``"isolation_forest"`` when it fell back).
    detector : str
        Detector name of the choice.
    params : dict
        Its parameters (seeded).
    fallback : bool
        Whether the choice is the default because the selector was not confident.
    reason : str
        Why this choice, in one line.
    proposed : str
        The selector's best candidate before any fallback.
    unchecked : str
        What the selector chose before the criteria check.
    confidence, utility, expected_gain, support : float
        For ``proposed``: weighted share of similar benchmark datasets where it beat the
        default, its utility, its expected ROC-AUC gain over the default, and the weight of
        the nearest benchmark dataset.
    utilities : dict of str to float
        Every allowed candidate's utility (the default's is 0).
    neighbours : dict of str to float
        The benchmark datasets' weights, largest first.
    criteria : dict
        Model Centrality of the checked candidates and whether it agreed (empty when not
        checked).
    metafeatures : MetaFeatures
    seconds : dict of str to float
        ``metafeatures``, ``criteria`` and ``total`` wall time.
    """

    choice: str
    detector: str
    params: dict[str, Any]
    fallback: bool
    reason: str
    proposed: str
    unchecked: str
    confidence: float
    utility: float
    expected_gain: float
    support: float
    utilities: dict[str, float]
    neighbours: dict[str, float]
    metafeatures: MetaFeatures
    criteria: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a registered model's metrics (NaN becomes None)."""

        def num(value: float) -> float | None:
            return None if not math.isfinite(value) else round(float(value), 6)

        return {
            "method": "selector",
            "choice": self.choice,
            "detector": self.detector,
            "params": dict(self.params),
            "fallback": self.fallback,
            "reason": self.reason,
            "proposed": self.proposed,
            "unchecked": self.unchecked,
            "confidence": num(self.confidence),
            "utility": num(self.utility),
            "expected_gain": num(self.expected_gain),
            "support": num(self.support),
            "utilities": {k: num(v) for k, v in self.utilities.items()},
            "neighbours": {k: num(v) for k, v in self.neighbours.items()},
            "criteria": {
                k: ({c: num(x) for c, x in v.items()} if isinstance(v, dict) else v)
                for k, v in self.criteria.items()
            },
            "metafeatures": self.metafeatures.as_dict(),
            "seconds": {k: num(v) for k, v in self.seconds.items()},
        }


class Selector:
    """A nearest-datasets ranker trained on a performance table.

    Parameters
    ----------
    table : PerformanceTable
        Benchmark runs; each dataset's runs are averaged over seeds.
    neighbours : int
        The kernel's bandwidth is the distance to this many-th nearest benchmark dataset.
    bandwidth : float
        Multiplies that bandwidth.
    risk : float
        Weight of the expected loss against the expected gain.
    margin : float
        Utility a candidate needs to be chosen over the default.
    min_confidence : float
        Weighted share of similar datasets on which the pick must have beaten the default.
    min_support : float
        Similarity the nearest benchmark dataset must have (else: unlike all of them).

    Raises
    ------
    adp.errors.ConfigError
        For a table with fewer than two datasets, without the default candidate, or whose
        meta-features are not the ones this ADP computes.
    """

    def __init__(
        self,
        table: PerformanceTable,
        neighbours: int = 3,
        bandwidth: float = 1.0,
        risk: float = 1.0,
        margin: float = 0.005,
        min_confidence: float = 0.5,
        min_support: float = 0.05,
    ) -> None:
        if list(table.metafeature_names) != list(NAMES):
            raise ConfigError(
                "the selection table's meta-features differ from this ADP's: rebuild it "
                "with 'adp bench selection --build'"
            )
        if DEFAULT_ID not in table.candidates:
            raise ConfigError(f"the selection table has no {DEFAULT_ID!r} candidate")
        datasets = table.datasets
        if len(datasets) < 2:
            raise ConfigError(
                f"the selector needs runs on at least 2 datasets, the table has {len(datasets)}"
            )
        self.table = table
        self.neighbours = neighbours
        self.bandwidth = bandwidth
        self.risk = risk
        self.margin = margin
        self.min_confidence = min_confidence
        self.min_support = min_support
        self.datasets_ = datasets
        self.candidates_ = list(table.candidates)
        default = self.candidates_.index(DEFAULT_ID)
        meta, deltas = [], []
        for name in datasets:
            runs = [r for r in table.runs if r.dataset == name]
            auc = np.array([r.roc_auc for r in runs], dtype=np.float64)
            delta = auc - auc[:, [default]]
            delta = np.where(np.isnan(delta), FAILED_GAIN, delta)
            deltas.append(delta.mean(axis=0))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: imputed below
                meta.append(np.nanmean(np.array([r.metafeatures for r in runs]), axis=0))
        self.deltas_ = np.array(deltas)  # datasets x candidates
        raw = np.array(meta)  # datasets x meta-features
        self.centre_ = np.nan_to_num(np.nanmean(raw, axis=0))
        scale = np.nan_to_num(np.nanstd(raw, axis=0))
        self.scale_ = np.where(scale > 1e-9, scale, np.inf)  # constant meta-features: ignored
        self.z_ = self._standardise(raw)
        gaps = [
            np.linalg.norm(self.z_[i] - self.z_[j])
            for i in range(len(datasets))
            for j in range(i + 1, len(datasets))
        ]
        self.median_gap_ = max(float(np.median(gaps)), 1e-9)

    def _standardise(self, raw: np.ndarray) -> np.ndarray:
        z = (raw - self.centre_) / self.scale_
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)

    def predict(self, metafeatures: MetaFeatures | np.ndarray) -> Prediction:
        """Every candidate's expected gain, downside, utility and confidence."""
        vector = metafeatures.vector() if isinstance(metafeatures, MetaFeatures) else metafeatures
        z = self._standardise(np.asarray(vector, dtype=np.float64)[None, :])[0]
        dist = np.linalg.norm(self.z_ - z, axis=1)
        k = min(max(self.neighbours, 1), dist.size) - 1
        h = max(float(np.sort(dist)[k]) * self.bandwidth, 1e-9)
        kernel = np.exp(-0.5 * (dist / h) ** 2)
        weights = kernel / kernel.sum()
        support = float(np.exp(-0.5 * (dist.min() / self.median_gap_) ** 2))
        gain = weights @ self.deltas_
        downside = weights @ np.maximum(-self.deltas_, 0.0)
        utility = gain - self.risk * downside
        confidence = weights @ (self.deltas_ > 0).astype(np.float64)
        default = self.candidates_.index(DEFAULT_ID)
        utility[default] = 0.0
        order = np.argsort(-weights)
        return Prediction(
            self.candidates_,
            gain,
            downside,
            utility,
            confidence,
            {self.datasets_[i]: float(weights[i]) for i in order},
            support,
        )

    def decide(
        self, prediction: Prediction, allowed: Sequence[str] | None = None
    ) -> tuple[str, str, bool, int]:
        """``(choice, reason, fallback, index of the proposed candidate)``, before any
        criteria check."""
        ids = self.candidates_
        allowed_set = set(ids if allowed is None else allowed) | {DEFAULT_ID}
        unknown = sorted(allowed_set - set(ids))
        if unknown:
            raise ConfigError(f"candidates {unknown} are not in the selection table: {ids}")
        others = [i for i, c in enumerate(ids) if c in allowed_set and c != DEFAULT_ID]
        default = ids.index(DEFAULT_ID)
        if not others:
            return DEFAULT_ID, "the default is the only allowed candidate", False, default
        best = max(others, key=lambda i: prediction.utility[i])
        u, conf = prediction.utility[best], prediction.confidence[best]
        if prediction.support < self.min_support:
            return (
                DEFAULT_ID,
                f"fallback: the data is unlike every benchmark dataset (similarity of the "
                f"nearest {prediction.support:.3f} < {self.min_support})",
                True,
                best,
            )
        if u <= self.margin:
            return (
                DEFAULT_ID,
                f"fallback: no candidate is expected to beat the default by more than "
                f"{self.margin} ROC-AUC net of risk (best {ids[best]}: {u:+.4f})",
                True,
                best,
            )
        if conf < self.min_confidence:
            return (
                DEFAULT_ID,
                f"fallback: {ids[best]} beat the default on only {conf:.0%} of similar "
                f"benchmark datasets (< {self.min_confidence:.0%})",
                True,
                best,
            )
        return (
            ids[best],
            f"{ids[best]}: expected {prediction.gain[best]:+.4f} ROC-AUC over the default, "
            f"better on {conf:.0%} of similar benchmark datasets",
            False,
            best,
        )


__all__ = ["FAILED_GAIN", "Prediction", "Selection", "Selector"]

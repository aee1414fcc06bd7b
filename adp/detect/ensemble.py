"""Ensembles: several detectors fitted on one sample, scored in one pass, scores combined.

``create_detector("ensemble", detectors=[...], combination="average")`` builds an
:class:`EnsembleDetector`. Every member is fitted on the same sample, in parallel (one task
per member). The fitted members travel to the workers as one model, so scoring reads each
partition once and one task per partition scores every member and combines their
normalised scores (:mod:`adp.detect.combine`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask
import numpy as np
from dask.delayed import Delayed

from adp.detect import fitting
from adp.detect.combine import EnsembleScorer, check_combination
from adp.detect.detector import Detector, check_contamination
from adp.detect.threshold import FixedScore, Threshold
from adp.errors import DetectorError

MemberSpec = str | Mapping[str, Any] | Detector


def _member(spec: MemberSpec, default_contamination: float, position: int) -> Detector:
    if isinstance(spec, Detector):
        if isinstance(spec, EnsembleDetector):
            raise DetectorError(f"ensemble member {position} is an ensemble: nest members flat")
        return spec
    if isinstance(spec, str):
        return Detector(spec, contamination=default_contamination)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"name", "params"})
        if "name" not in spec or unknown:
            raise DetectorError(
                f"ensemble member {position} must be a name, a Detector or "
                f"{{'name': ..., 'params': {{...}}}}; got keys {sorted(spec)}"
            )
        params = dict(spec.get("params") or {})
        params.setdefault("contamination", default_contamination)
        return Detector(str(spec["name"]), **params)
    raise DetectorError(
        f"ensemble member {position} must be a name, a Detector or a dict, "
        f"not {type(spec).__name__}"
    )


def _combine_members(
    results: list[fitting.FitResult],
    combination: str,
    normalization: str,
    n_buckets: int,
    random_state: int | None,
) -> fitting.FitResult:
    scorer = EnsembleScorer(
        [r.scorer for r in results],
        [r.stats for r in results],  # type: ignore[misc]
        combination,
        normalization,
        n_buckets,
        random_state,
    )
    return fitting.FitResult(
        scorer,
        results[0].reference,
        None,
        max(r.n_rows for r in results),
        float(sum(r.seconds for r in results)),
        len(results),
    )


class EnsembleDetector(Detector):
    """Several detectors combined into one score.

    Parameters
    ----------
    detectors : sequence
        Members: registered names (``"ecod"``), dicts ``{"name": ..., "params": {...}}``
        or unfitted :class:`~adp.detect.detector.Detector` objects.
    combination : {"average", "max", "median", "aom", "moa", "vote"}
        How member scores are combined (:mod:`adp.detect.combine`).
    normalization : {"zscore", "rank"}
        How member scores are put on one scale first: z-scores with each member's
        training-score mean and standard deviation, or each member's training-score
        empirical CDF.
    contamination : float or "auto"
        The share of rows to flag (members named without their own contamination use
        it too, for ``vote``). For ``vote`` the default threshold is a majority of members
        (a fixed score of 0.5) instead.
    n_buckets : int
        Buckets of members for ``aom`` and ``moa``.
    random_state : int, optional
        Seed of the bucket assignment.
    """

    def __init__(
        self,
        detectors: Sequence[MemberSpec],
        combination: str = "average",
        normalization: str = "zscore",
        contamination: float | str = 0.1,
        n_buckets: int = 5,
        random_state: int | None = None,
    ) -> None:
        if isinstance(detectors, str | Mapping) or not detectors:
            raise DetectorError("detectors must be a non-empty list of members")
        check_combination(combination, normalization)
        self.info = None  # type: ignore[assignment]
        self.name = "ensemble"
        self.contamination = check_contamination(contamination)
        self.members = [_member(d, self.fit_contamination, i) for i, d in enumerate(detectors)]
        self.combination = combination
        self.normalization = normalization
        self.n_buckets = int(n_buckets)
        self.random_state = random_state
        # JSON-able, and create_detector("ensemble", **params) rebuilds the same ensemble
        self.params: dict[str, Any] = {
            "detectors": [{"name": m.name, "params": m.get_params()} for m in self.members],
            "combination": combination,
            "normalization": normalization,
            "n_buckets": self.n_buckets,
            "random_state": random_state,
        }

    def __repr__(self) -> str:
        return (
            f"EnsembleDetector({[m.name for m in self.members]!r}, "
            f"combination={self.combination!r}, normalization={self.normalization!r}, "
            f"contamination={self.contamination!r})"
        )

    def get_params(self) -> dict[str, Any]:
        """All parameters, ``contamination`` included; members as ``{name, params}`` dicts."""
        return {"contamination": self.contamination, **self.params}

    def _strategies(self) -> tuple[str, ...]:
        return ("sample",)

    def _max_fit_rows(self) -> int | None:
        return None  # each member caps its own rows (fitting.fit_matrix)

    def _plan_fit(
        self,
        parts: list[Delayed],
        counts: list[int],
        strategy: str,
        n_models: int,
        random_state: int | None,
    ) -> Delayed:
        results = [
            fitting.plan_sample(
                m.info,
                m.params,
                m.fit_contamination,
                parts,
                self.features_,
                with_stats=True,
                seed=random_state,
            )
            for m in self.members
        ]
        return dask.delayed(_combine_members)(
            results, self.combination, self.normalization, self.n_buckets, self.random_state
        )

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold:
        """As :meth:`Detector.threshold_rule`; for ``vote``, by default a majority of members."""
        if threshold is None and self.combination == "vote":
            return FixedScore(0.5)
        return super().threshold_rule(threshold)

    def member_scores(self, X: np.ndarray) -> np.ndarray:
        """Each member's normalised score (or vote) of the rows of ``X`` (rows x members)."""
        self._check_fitted()
        scorer: EnsembleScorer = self.scorer_  # type: ignore[assignment]
        return scorer.member_scores(X)

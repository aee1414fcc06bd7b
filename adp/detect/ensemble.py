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
from adp.detect.base import BaseDetector
from adp.detect.combine import EnsembleScorer, check_combination
from adp.detect.registry import detector_info
from adp.detect.single import Detector
from adp.detect.threshold import FixedScore, Threshold, check_contamination
from adp.errors import DetectorError

MemberSpec = str | Mapping[str, Any] | Detector


def _single(name: str, **params: Any) -> Detector:
    """A member built and checked from a name (canonical) and parameters."""
    detector = Detector(detector_info(name).name, **params)
    detector._validate()
    return detector


def _member(spec: object, default_contamination: float, position: int) -> Detector:
    if isinstance(spec, Detector):
        spec._validate()
        return spec
    if isinstance(spec, BaseDetector):
        raise DetectorError(f"ensemble member {position} is an ensemble: nest members flat")
    if isinstance(spec, str):
        return _single(spec, contamination=default_contamination)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"name", "params"})
        if "name" not in spec or unknown:
            raise DetectorError(
                f"ensemble member {position} must be a name, a Detector or "
                f"{{'name': ..., 'params': {{...}}}}; got keys {sorted(spec)}"
            )
        params = dict(spec.get("params") or {})
        params.setdefault("contamination", default_contamination)
        return _single(str(spec["name"]), **params)
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


class EnsembleDetector(BaseDetector):
    """Several detectors combined into one score.

    ``__init__`` only stores its arguments; the members are built and checked by
    :meth:`fit` (and at once by :func:`adp.create_detector`).

    Parameters
    ----------
    detectors : sequence
        Members: registered names (``"ecod"``), dicts ``{"name": ..., "params": {...}}``
        or unfitted :class:`~adp.detect.single.Detector` objects.
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
        Seed of the bucket assignment (and of the fit sample, by default).

    Attributes
    ----------
    members_ : list of Detector
        The members, as fitted (their fitted scorers live in ``scorer_``).
    """

    name = "ensemble"

    def __init__(
        self,
        detectors: Sequence[MemberSpec],
        combination: str = "average",
        normalization: str = "zscore",
        contamination: float | str = 0.1,
        n_buckets: int = 5,
        random_state: int | None = None,
    ) -> None:
        self.detectors = detectors
        self.combination = combination
        self.normalization = normalization
        self.contamination = contamination
        self.n_buckets = n_buckets
        self.random_state = random_state

    # -- parameters -----------------------------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters as given to ``__init__`` (``detectors`` as given: names, dicts or
        detectors; :attr:`params` has them as plain data)."""
        return {
            "detectors": self.detectors,
            "combination": self.combination,
            "normalization": self.normalization,
            "contamination": self.contamination,
            "n_buckets": self.n_buckets,
            "random_state": self.random_state,
        }

    def _param_names(self) -> list[str]:
        return list(self.get_params(deep=False))

    def _validate(self) -> None:
        detectors = self.detectors
        if isinstance(detectors, str | Mapping) or not detectors:
            raise DetectorError("detectors must be a non-empty list of members")
        check_combination(self.combination, self.normalization)
        check_contamination(self.contamination)
        if int(self.n_buckets) < 1:
            raise DetectorError(f"n_buckets must be at least 1, got {self.n_buckets!r}")
        self._build_members()

    def _build_members(self) -> list[Detector]:
        share = self.fit_contamination
        return [_member(d, share, i) for i, d in enumerate(self.detectors)]

    @property
    def members(self) -> list[Detector]:
        """The members as detectors: ``members_`` once fitted, else built from
        ``detectors`` (checked; names canonical)."""
        fitted: list[Detector] | None = getattr(self, "members_", None)
        return fitted if fitted is not None else self._build_members()

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as plain, JSON-able data (members as ``{name, params}`` dicts);
        ``create_detector("ensemble", contamination=..., **params)`` rebuilds the same
        ensemble."""
        members = []
        for m in self.members:
            member_params = {k: v for k, v in m.get_params(deep=False).items() if k != "name"}
            members.append({"name": m.info.name, "params": member_params})
        return {
            "detectors": members,
            "combination": self.combination,
            "normalization": self.normalization,
            "n_buckets": int(self.n_buckets),
            "random_state": self.random_state,
        }

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        raise AttributeError(
            "an ensemble's params are derived from its members: use set_params(detectors=...)"
        )

    def __repr__(self) -> str:
        names = [m.name if isinstance(m, BaseDetector) else m for m in self.detectors]
        return (
            f"EnsembleDetector({names!r}, combination={self.combination!r}, "
            f"normalization={self.normalization!r}, contamination={self.contamination!r})"
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Ensembles pickled before the estimator contract kept their members in `members`
        # and their parameters in `params` (now both derived): rebuild `detectors`.
        state = dict(state)
        if "detectors" not in state and isinstance(state.get("params"), dict):
            state["detectors"] = state["params"]["detectors"]
            if "scorer_" in state and "members" in state:
                state["members_"] = state["members"]
            for derived in ("params", "members", "info", "name"):
                state.pop(derived, None)
        super().__setstate__(state)

    # -- fitting --------------------------------------------------------------------------

    def _default_seed(self) -> int | None:
        return self.random_state

    def _plan_fit(
        self,
        parts: list[Delayed],
        counts: list[int],
        features: list[str],
        strategy: str,
        n_models: int,
        random_state: int | None,
    ) -> Delayed:
        results = [
            fitting.plan_single_fit(
                m.info,
                m.params,
                m.fit_contamination,
                parts,
                features,
                with_stats=True,
                seed=random_state,
            )
            for m in self._build_members()
        ]
        return dask.delayed(_combine_members)(
            results, self.combination, self.normalization, int(self.n_buckets), self.random_state
        )

    def _fitted_extras(self) -> dict[str, Any]:
        return {"members_": self._build_members()}

    # -- scoring --------------------------------------------------------------------------

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold:
        """As :meth:`BaseDetector.threshold_rule`; for ``vote``, by default a majority of
        members (a fixed score of 0.5)."""
        if threshold is None and self.combination == "vote":
            return FixedScore(0.5)
        return super().threshold_rule(threshold)

    def member_scores(self, X: np.ndarray) -> np.ndarray:
        """Each member's normalised score (or vote) of the rows of ``X`` (rows x members)."""
        self.check_fitted()
        scorer: EnsembleScorer = self.scorer_  # type: ignore[assignment]
        return scorer.member_scores(X)

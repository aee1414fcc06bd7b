"""Detectors by name: ``create_detector("isolation_forest", n_estimators=200)``.

Names are lower-case and stable. Each entry says which estimator class implements it, how a
fitted estimator becomes a partition-invariant :class:`~adp.detect.scorers.Scorer`, and what
it costs.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from adp.detect.scorers import NegatedSklearnScorer, PyODScorer, Scorer
from adp.errors import DetectorError

ScorerFactory = Callable[[Any, np.ndarray], Scorer]


def _pyod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    return PyODScorer(estimator)


def _sklearn_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    return NegatedSklearnScorer(estimator)


def _ecod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    from adp.detect.ecdf import FrozenEcdfScorer

    return FrozenEcdfScorer(X_train, "ecod")


def _copod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    from adp.detect.ecdf import FrozenEcdfScorer

    return FrozenEcdfScorer(X_train, "copod")


@dataclass(frozen=True)
class DetectorInfo:
    """One registry entry.

    Attributes
    ----------
    name : str
        The stable, lower-case name.
    estimator : str
        ``"module:Class"`` of the estimator that is fitted.
    summary : str
        One line on what the detector does.
    fit_cost, score_cost : str
        Complexity in rows ``n`` (fit sample) and features ``d``.
    deterministic : bool
        Whether fitting the same sample twice gives the same scores without a seed.
    scorer : callable
        Turns the fitted estimator (and its training matrix) into a scorer.
    aliases : tuple of str
        Other accepted names.
    extra : str or None
        The ``pip install adp[...]`` extra that provides the estimator, if optional.
    """

    name: str
    estimator: str
    summary: str
    fit_cost: str
    score_cost: str
    deterministic: bool
    scorer: ScorerFactory = _pyod_scorer
    aliases: tuple[str, ...] = ()
    extra: str | None = None
    fixed_params: dict[str, Any] = field(default_factory=dict)

    def estimator_class(self) -> type:
        """Import and return the estimator class."""
        module_name, _, class_name = self.estimator.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f": pip install 'adp[{self.extra}]'" if self.extra else ""
            raise DetectorError(f"detector {self.name!r} is not available{hint} ({exc})") from exc
        cls: type = getattr(module, class_name)
        return cls

    def valid_params(self) -> list[str]:
        """The estimator's constructor parameters (plus ``contamination``)."""
        signature = inspect.signature(self.estimator_class())
        names = {
            p.name
            for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        names.add("contamination")
        return sorted(names - set(self.fixed_params))

    def build(self, params: dict[str, Any], contamination: float) -> Any:
        """Instantiate the estimator with ``params`` (contamination passed if it takes it)."""
        cls = self.estimator_class()
        accepted = inspect.signature(cls).parameters
        kwargs = dict(params)
        if "contamination" in accepted:
            kwargs["contamination"] = contamination
        kwargs.update(self.fixed_params)
        return cls(**kwargs)


_DETECTORS: dict[str, DetectorInfo] = {}
_ALIASES: dict[str, str] = {}


def register(info: DetectorInfo) -> DetectorInfo:
    """Add ``info`` to the registry under its name and aliases."""
    for name in (info.name, *info.aliases):
        if name != name.lower():
            raise ValueError(f"detector names are lower-case: {name!r}")
    _DETECTORS[info.name] = info
    for alias in info.aliases:
        _ALIASES[alias] = info.name
    return info


def available() -> list[str]:
    """Sorted canonical names of every registered detector."""
    return sorted(_DETECTORS)


def detector_info(name: str) -> DetectorInfo:
    """Look up a detector by name or alias.

    Raises
    ------
    adp.errors.DetectorError
        For an unknown name, listing the valid ones.
    """
    key = str(name).lower()
    key = _ALIASES.get(key, key)
    try:
        return _DETECTORS[key]
    except KeyError:
        raise DetectorError(
            f"unknown detector {name!r}; valid names: {', '.join(available())} "
            f"(aliases: {', '.join(sorted(_ALIASES))})"
        ) from None


def all_detectors() -> list[DetectorInfo]:
    """Every registry entry, sorted by name."""
    return [_DETECTORS[name] for name in available()]


_CORE = [
    DetectorInfo(
        "isolation_forest",
        "pyod.models.iforest:IForest",
        "Isolation forest: random axis-parallel splits isolate outliers in few steps.",
        fit_cost="O(t * s log s), s = max_samples",
        score_cost="O(n * t * log s)",
        deterministic=False,
        aliases=("iforest",),
    ),
    DetectorInfo(
        "ecod",
        "pyod.models.ecod:ECOD",
        "Empirical-CDF outlier detection: summed tail probabilities per feature.",
        fit_cost="O(n log n * d)",
        score_cost="O(n * d * log n_fit)",
        deterministic=True,
        scorer=_ecod_scorer,
    ),
    DetectorInfo(
        "copod",
        "pyod.models.copod:COPOD",
        "Copula-based outlier detection with empirical copulas.",
        fit_cost="O(n log n * d)",
        score_cost="O(n * d * log n_fit)",
        deterministic=True,
        scorer=_copod_scorer,
    ),
    DetectorInfo(
        "hbos",
        "pyod.models.hbos:HBOS",
        "Histogram-based outlier score: per-feature histogram densities.",
        fit_cost="O(n * d)",
        score_cost="O(n * d)",
        deterministic=True,
    ),
    DetectorInfo(
        "lof",
        "pyod.models.lof:LOF",
        "Local outlier factor: local density relative to the k nearest neighbours.",
        fit_cost="O(n log n * d) with trees",
        score_cost="O(n * k * log n_fit)",
        deterministic=True,
    ),
    DetectorInfo(
        "knn",
        "pyod.models.knn:KNN",
        "Distance to the k-th nearest training neighbour.",
        fit_cost="O(n log n * d) with trees",
        score_cost="O(n * k * log n_fit)",
        deterministic=True,
    ),
    DetectorInfo(
        "one_class_svm",
        "pyod.models.ocsvm:OCSVM",
        "One-class SVM: a kernel boundary around the normal data.",
        fit_cost="O(n^2 * d) to O(n^3)",
        score_cost="O(n * n_support * d)",
        deterministic=True,
        aliases=("ocsvm",),
    ),
    DetectorInfo(
        "pca",
        "pyod.models.pca:PCA",
        "Principal component analysis: weighted distance in the minor components.",
        fit_cost="O(n * d^2)",
        score_cost="O(n * d^2)",
        deterministic=True,
    ),
]

for _info in _CORE:
    register(_info)

__all__ = [
    "DetectorInfo",
    "all_detectors",
    "available",
    "detector_info",
    "register",
]

"""Detectors by name: ``create_detector("isolation_forest", n_estimators=200)``.

Names are lower-case and stable. Each entry says which estimator class implements it, how a
fitted estimator becomes a partition-invariant :class:`~adp.detect.scorers.Scorer`, and what
it costs. This module holds the core eight; :mod:`adp.detect.catalog` (imported at the end)
registers the rest, and ``adp detectors`` lists them all.
"""

from __future__ import annotations

import importlib
import importlib.util
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


def _fit_iforest(estimator: Any, X: np.ndarray) -> Any:
    from adp.detect.forest import fit_pyod_iforest

    return fit_pyod_iforest(estimator, X)


def _iforest_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """PyOD ``IForest``: its scikit-learn forest, compiled (same scores as PyOD's)."""
    from adp.detect.forest import ForestScorer

    return ForestScorer(estimator.detector_, pyod_scale=True)


def _ecod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    from adp.detect.ecdf import FrozenEcdfScorer

    return FrozenEcdfScorer(X_train, "ecod")


def _hbos_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    from adp.detect.hbos import HbosScorer

    return HbosScorer(estimator)


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
        Complexity in rows fitted ``n`` (the sample), rows scored ``m`` and features ``d``.
    deterministic : bool
        Whether fitting the same sample twice gives the same scores without a seed.
    scorer : callable
        Turns the fitted estimator (and its training matrix) into a scorer.
    fitter : callable or None
        Fits the built estimator on the training matrix instead of its own ``fit`` (the
        same fitted state, obtained faster); ``None`` calls ``estimator.fit(X)``.
    aliases : tuple of str
        Other accepted names.
    extra : str or None
        The ``pip install adp[...]`` extra that provides the estimator, if optional.
    fixed_params : dict
        Parameters ADP always passes and users cannot set (for example ``novelty=True``).
    defaults : dict
        Parameters ADP passes unless the user sets them (for example ``verbose=0``).
    requires : tuple of str
        Modules, besides the estimator's own, that must be importable.
    needs_n_features : bool
        Whether the constructor takes ``n_features`` (passed from the fit sample).
    strategies : tuple of str
        The fit strategies the detector supports (see :meth:`Detector.fit`).
    max_fit_rows : int or None
        The most rows one model is fitted on, whatever ``sample_rows`` asks (quadratic fits).
    notes : str
        How ADP's scoring differs from the estimator's own, if it does.
    """

    name: str
    estimator: str
    summary: str
    fit_cost: str
    score_cost: str
    deterministic: bool
    scorer: ScorerFactory = _pyod_scorer
    fitter: Callable[[Any, np.ndarray], Any] | None = None
    aliases: tuple[str, ...] = ()
    extra: str | None = None
    fixed_params: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    needs_n_features: bool = False
    strategies: tuple[str, ...] = ("sample", "bagging")
    max_fit_rows: int | None = None
    notes: str = ""

    def is_available(self) -> bool:
        """Whether the estimator's module and every required module can be imported.

        Checked with :func:`importlib.util.find_spec`, so nothing heavy (torch) is imported.
        """
        module_name = self.estimator.partition(":")[0]
        for name in (*self.requires, module_name):
            try:
                if importlib.util.find_spec(name) is None:
                    return False
            except (ImportError, ValueError):
                return False
        return True

    def install_hint(self) -> str:
        """How to make the detector available (empty when it needs no optional extra)."""
        if not self.extra:
            return ""
        return f"pip install 'adp[{self.extra}]'"

    def estimator_class(self) -> type:
        """Import and return the estimator class."""
        module_name, _, class_name = self.estimator.partition(":")
        try:
            for required in self.requires:
                importlib.import_module(required)
            module = importlib.import_module(module_name)
        except ImportError as exc:
            hint = f": {self.install_hint()}" if self.extra else ""
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
        hidden = set(self.fixed_params) | ({"n_features"} if self.needs_n_features else set())
        return sorted(names - hidden)

    def build(
        self, params: dict[str, Any], contamination: float, n_features: int | None = None
    ) -> Any:
        """Instantiate the estimator with ``params`` (contamination passed if it takes it).

        Parameters
        ----------
        params : dict
            The user's parameters (already checked against :meth:`valid_params`).
        contamination : float
            Passed when the estimator accepts it.
        n_features : int, optional
            Passed as ``n_features`` when :attr:`needs_n_features` is set.
        """
        cls = self.estimator_class()
        accepted = inspect.signature(cls).parameters
        kwargs = {**self.defaults, **params}
        if "contamination" in accepted:
            kwargs["contamination"] = contamination
        if self.needs_n_features:
            if n_features is None:
                raise DetectorError(f"detector {self.name!r} needs n_features to be built")
            kwargs["n_features"] = int(n_features)
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
        score_cost="O(m * t * log s)",
        deterministic=False,
        scorer=_iforest_scorer,
        fitter=_fit_iforest,
        aliases=("iforest",),
        defaults={"n_jobs": 1},
        strategies=("sample", "distributed", "bagging"),
    ),
    DetectorInfo(
        "ecod",
        "pyod.models.ecod:ECOD",
        "Empirical-CDF outlier detection: summed tail probabilities per feature.",
        fit_cost="O(n log n * d)",
        score_cost="O(m * d * log n)",
        deterministic=True,
        scorer=_ecod_scorer,
        notes="Scored against per-feature ECDFs frozen at fit (PyOD re-fits on each batch).",
    ),
    DetectorInfo(
        "copod",
        "pyod.models.copod:COPOD",
        "Copula-based outlier detection with empirical copulas.",
        fit_cost="O(n log n * d)",
        score_cost="O(m * d * log n)",
        deterministic=True,
        scorer=_copod_scorer,
        notes="Scored against per-feature ECDFs frozen at fit (PyOD re-fits on each batch).",
    ),
    DetectorInfo(
        "hbos",
        "pyod.models.hbos:HBOS",
        "Histogram-based outlier score: per-feature histogram densities.",
        fit_cost="O(n * d)",
        score_cost="O(m * d)",
        deterministic=True,
        scorer=_hbos_scorer,
        notes="Scored in one compiled pass (adp.detect.hbos); equal to PyOD's to 1e-12.",
    ),
    DetectorInfo(
        "lof",
        "pyod.models.lof:LOF",
        "Local outlier factor: local density relative to the k nearest neighbours.",
        fit_cost="O(n log n * d) with trees",
        score_cost="O(m * k * log n)",
        deterministic=True,
        notes=(
            "Rows are scored with decision_function against the fitted rows: a row that was "
            "in the fit sample is its own nearest neighbour (PyOD's decision_scores_ leave "
            "it out)."
        ),
    ),
    DetectorInfo(
        "knn",
        "pyod.models.knn:KNN",
        "Distance to the k-th nearest training neighbour.",
        fit_cost="O(n log n * d) with trees",
        score_cost="O(m * k * log n)",
        deterministic=True,
        notes=(
            "Rows are scored with decision_function against the fitted rows: a row that was "
            "in the fit sample is its own nearest neighbour (PyOD's decision_scores_ leave "
            "it out)."
        ),
    ),
    DetectorInfo(
        "one_class_svm",
        "pyod.models.ocsvm:OCSVM",
        "One-class SVM: a kernel boundary around the normal data.",
        fit_cost="O(n^2 * d) to O(n^3)",
        score_cost="O(m * n_support * d)",
        deterministic=True,
        aliases=("ocsvm",),
    ),
    DetectorInfo(
        "pca",
        "pyod.models.pca:PCA",
        "Principal component analysis: weighted distance in the minor components.",
        fit_cost="O(n * d^2)",
        score_cost="O(m * d^2)",
        deterministic=True,
    ),
]

for _info in _CORE:
    register(_info)

# The rest of the catalogue (PyOD's other classic detectors, scikit-learn's, the deep ones)
# registers itself on import.
from adp.detect import catalog as _catalog  # noqa: E402,F401

__all__ = [
    "DetectorInfo",
    "all_detectors",
    "available",
    "detector_info",
    "register",
]

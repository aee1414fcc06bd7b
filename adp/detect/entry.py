"""One entry of the detector catalogue: :class:`DetectorInfo`, and the scorer factories
that turn a fitted estimator into a partition-invariant :class:`~adp.detect.scorers.Scorer`.

:mod:`adp.detect.catalog` lists the entries; :mod:`adp.detect.registry` looks them up.
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


def pyod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """A row-independent PyOD detector: its own ``decision_function``."""
    return PyODScorer(estimator)


def sklearn_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """A scikit-learn outlier detector: its negated ``score_samples``."""
    return NegatedSklearnScorer(estimator)


def fit_iforest(estimator: Any, X: np.ndarray) -> Any:
    """Fit PyOD's ``IForest`` scoring the training rows once (:func:`fit_pyod_iforest`)."""
    from adp.detect.forest import fit_pyod_iforest

    return fit_pyod_iforest(estimator, X)


def iforest_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """PyOD ``IForest``: its scikit-learn forest, compiled (same scores as PyOD's)."""
    from adp.detect.forest import ForestScorer

    return ForestScorer(estimator.detector_, pyod_scale=True)


def ecod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """ECOD against ECDFs frozen at fit time."""
    from adp.detect.ecdf import FrozenEcdfScorer

    return FrozenEcdfScorer(X_train, "ecod")


def fit_hbos(estimator: Any, X: np.ndarray) -> Any:
    """Fit PyOD's ``HBOS`` scoring the training rows compiled (:func:`fit_pyod_hbos`)."""
    from adp.detect.hbos import fit_pyod_hbos

    return fit_pyod_hbos(estimator, X)


def hbos_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """HBOS, compiled."""
    from adp.detect.hbos import HbosScorer

    return HbosScorer(estimator)


def knn_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """PyOD ``KNN`` on the exact blocked neighbour search (:mod:`adp.detect.neighbor_scorers`)."""
    from adp.detect.neighbor_scorers import knn_scorer as build

    return build(estimator, X_train)


def lof_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """LOF (PyOD's or scikit-learn's novelty LOF) on the exact blocked neighbour search."""
    from adp.detect.neighbor_scorers import lof_scorer as build

    return build(estimator, X_train)


def copod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """COPOD against ECDFs frozen at fit time."""
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
    scorer: ScorerFactory = pyod_scorer
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


__all__ = [
    "DetectorInfo",
    "ScorerFactory",
    "copod_scorer",
    "ecod_scorer",
    "fit_iforest",
    "hbos_scorer",
    "iforest_scorer",
    "knn_scorer",
    "lof_scorer",
    "pyod_scorer",
    "sklearn_scorer",
]

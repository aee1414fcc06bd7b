"""Detectors learned from labels: an unsupervised parent plus what analysts' labels taught.

Each is an :class:`adp.detect.base.BaseDetector`, so it scores like any detector
(partition-parallel, partition-invariant, the parent's missing-value policy with its
fit-time medians), registers in the model registry and scores in jobs:

- :class:`RecalibratedDetector` (method ``threshold``): the parent's scores with a fixed
  threshold, the lowest at which the labelled rows reach a target precision;
- :class:`~adp.feedback.semi_supervised.SemiSupervisedDetector` (``semi_supervised``, in
  its own module): XGBOD-style, a gradient-boosted classifier over the parent's score(s)
  and the features, trained on the labelled rows;
- :class:`WeightedEnsembleDetector` (``ensemble_weights``): an ensemble's members combined
  with weights learned from the labels.

``fit(ddf, label="label")`` takes rows with the parent's feature columns and a label
column: 1 for an anomaly, 0 for a normal row, missing for an unlabelled row
(:func:`adp.feedback.learn.with_labels` adds it from the label store). The labelled rows
(and the unlabelled sample) are drawn on the workers; one task fits, next to the parent's
fitted scorer; only the learned scorer comes back. The parent stays fitted: ``fit`` never
refits it, and :func:`sklearn.base.clone` keeps it (the same object) rather than cloning it.
"""

from __future__ import annotations

import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Self

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect.base import BaseDetector
from adp.detect.combine import EnsembleScorer
from adp.detect.features import feature_matrix
from adp.detect.inspection import Inspection, inspect_apart
from adp.detect.sampling import plan_sample
from adp.detect.scorers import Scorer
from adp.detect.threshold import FixedScore, Threshold, check_contamination
from adp.errors import DataError, DetectorError, NotFittedError
from adp.feedback.learners import fit_member_weights, precision_threshold
from adp.io.validate import MissingPolicy

#: Fitted attributes a learned detector adds to :data:`adp.detect.base.FITTED_ATTRIBUTES`.
LEARNED_ATTRIBUTES = ("threshold_", "n_anomalies_", "n_normals_", "n_unlabelled_")


def _concat(parts: Sequence[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    frames = [p for p in parts if len(p)]
    return pd.concat(frames) if frames else pd.DataFrame(columns=columns)


def _learn_task(
    learner: Any,
    parent: Scorer,
    labelled: list[pd.DataFrame],
    unlabelled: list[pd.DataFrame],
    features: list[str],
    label: str,
) -> tuple[Scorer, float | None, int, int, int, float]:
    """Run on a worker: gather the drawn rows, learn, return the scorer and counts."""
    rows = _concat(labelled, [*features, label])
    X = feature_matrix(rows, features, where="labelled rows") if len(rows) else None
    y = rows[label].to_numpy(np.float64) if len(rows) else np.empty(0)
    if X is None:
        X = np.empty((0, len(features)))
    sample = _concat(unlabelled, features)
    U = feature_matrix(sample, features, where="unlabelled sample") if len(sample) else None
    started = time.perf_counter()
    scorer, threshold = learner(parent, X, y, U)
    seconds = time.perf_counter() - started
    anomalies = int((y == 1).sum())
    return scorer, threshold, anomalies, int((y == 0).sum()), 0 if U is None else len(U), seconds


class LearnedDetector(BaseDetector, ABC):
    """What the detectors learned from labels share (not instantiated itself).

    Parameters
    ----------
    base : BaseDetector
        The fitted unsupervised parent (a registered model, loaded).
    contamination : float or "auto"
        The share of rows to flag when no fixed threshold was learned.
    random_state : int, optional
        Seed of the unlabelled sample and the learner.
    """

    name = "learned"
    #: The lineage method recorded in the model registry.
    method = "learned"
    base: BaseDetector
    random_state: int | None

    @abstractmethod
    def _own_params(self) -> dict[str, Any]:
        """The subclass's own parameters, by name (everything but ``base``)."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters as given (``base`` is the fitted parent itself)."""
        return {"base": self.base, **self._own_params()}

    def _param_names(self) -> list[str]:
        return list(self.get_params(deep=False))

    def __sklearn_clone__(self) -> Self:
        """A clone keeps the same fitted ``base`` (cloning it would unfit it)."""
        return type(self)(**self.get_params(deep=False))

    @property
    def params(self) -> dict[str, Any]:
        """The parameters as plain data, the parent as ``{name, params}`` (what the model
        registry records)."""
        own = {k: v for k, v in self._own_params().items() if k != "contamination"}
        return {"base": {"name": self.base.name, "params": self.base.params}, **own}

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        raise AttributeError("a learned detector's params are derived: use set_params(...)")

    def __repr__(self) -> str:
        own = ", ".join(f"{k}={v!r}" for k, v in self._own_params().items())
        return f"{type(self).__name__}(base={self.base.name!r}, {own})"

    def _validate(self) -> None:
        if not isinstance(self.base, BaseDetector):
            raise DetectorError(
                f"base must be a fitted adp detector (a registered model, loaded), not "
                f"{type(self.base).__name__}"
            )
        if not self.base.is_fitted:
            raise NotFittedError(
                f"the base detector {self.base.name!r} is not fitted: fit it (or load a "
                "registered model) before learning from labels"
            )
        check_contamination(self.contamination)
        self._validate_own()

    def _validate_own(self) -> None:
        """Check the subclass's own parameters."""

    @abstractmethod
    def _learner(self) -> Any:
        """``learner(parent_scorer, X, y, U) -> (scorer, threshold or None)``."""

    def _unlabelled_rows(self) -> int:
        """Unlabelled rows to draw by default (0: the method uses none)."""
        return 0

    # -- fitting ----------------------------------------------------------------------
    def fit(
        self,
        ddf: dd.DataFrame,
        features: Sequence[str] | None = None,
        sample_rows: int | None = None,
        random_state: int | None = None,
        *,
        label: str = "label",
        exclude: Sequence[str] = (),
        key: Sequence[str] = (),
        strategy: str = "sample",
        n_models: int | None = None,
        missing: MissingPolicy | None = None,
        inspect: Inspection | None = None,
    ) -> Self:
        """Learn from the labelled rows of ``ddf``; the parent stays as fitted.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Rows with the parent's feature columns and the ``label`` column: 1 (anomaly),
            0 (normal) or missing (unlabelled).
        features : sequence of str, optional
            Must be the parent's features when given (they are the parent's).
        sample_rows : int, optional
            Unlabelled rows to draw (methods that use them); default the detector's own
            setting.
        random_state : int, optional
            Default the detector's ``random_state``.
        label : str, default "label"
            The label column.
        exclude, key, n_models
            Accepted for the common signature; the features are the parent's.
        strategy : {"sample"}
            The only one: the labelled rows are few.
        missing : None
            The parent's fitted missing-value policy always applies; giving another one
            is refused.
        inspect : Inspection, optional
            Run on every partition of ``ddf`` and concluded before learning, in a pass of
            its own (see :meth:`adp.detect.base.BaseDetector.fit`).

        Returns
        -------
        LearnedDetector
            ``self``, fitted.

        Raises
        ------
        adp.errors.DataError
            When ``label`` or a feature column is not in ``ddf``.
        adp.errors.DetectorError
            For a bad parameter, a missing class among the labels, or (threshold) no cut
            reaching the target precision.
        """
        self._validate()
        base = self.base
        chosen = list(base.features_)
        if features is not None and list(features) != chosen:
            raise DetectorError(
                f"features must be the base detector's {chosen}, got {list(features)}"
            )
        if strategy != "sample":
            raise DetectorError(f"{self.name!r} supports strategy='sample' only, got {strategy!r}")
        if missing is not None and missing != base.missing_:
            raise DetectorError(
                f"the base detector applies missing={base.missing_!r} (its fitted policy); "
                f"missing={missing!r} cannot change it"
            )
        if label not in ddf.columns:
            raise DataError(
                f"the label column {label!r} is not in the data (columns: "
                f"{list(ddf.columns)[:20]}): add it with adp.feedback.with_labels(...)"
            )
        if inspect is not None:
            inspect_apart(ddf, inspect)
        prepared = base.prepare(ddf[[*chosen, label]])
        labelled = prepared[~prepared[label].isna()]
        seed = self.random_state if random_state is None else random_state
        wanted = self._unlabelled_rows() if sample_rows is None else int(sample_rows)
        unlabelled_parts: list[Delayed] = []
        if wanted > 0:
            unlabelled = prepared[prepared[label].isna()][chosen]
            try:
                unlabelled_parts, _, _, _ = plan_sample(unlabelled, wanted, seed)
            except DataError:  # every row is labelled
                unlabelled_parts = []
        task = dask.delayed(_learn_task, pure=False)(
            self._learner(),
            base.model_ref(),
            labelled.to_delayed(),
            unlabelled_parts,
            chosen,
            label,
        )
        scorer, threshold, anomalies, normals, n_unlabelled, seconds = task.compute()
        self.features_ = chosen
        self.scorer_ = scorer
        self.reference_ = base.reference_
        self.missing_ = base.missing_
        self.medians_ = base.medians_
        self.strategy_ = "labels"
        self.n_models_ = 1
        self.n_samples_fit_ = anomalies + normals + n_unlabelled
        self.n_rows_seen_ = int(getattr(base, "n_rows_seen_", 0) or 0)
        self.fit_seconds_ = seconds
        self.model_id_ = uuid.uuid4().hex
        self.threshold_ = threshold
        self.n_anomalies_ = anomalies
        self.n_normals_ = normals
        self.n_unlabelled_ = n_unlabelled
        return self

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold:
        """As :meth:`BaseDetector.threshold_rule`; by default the learned fixed threshold
        (``threshold_``) when there is one."""
        learned = getattr(self, "threshold_", None)
        if threshold is None and learned is not None:
            return FixedScore(float(learned))
        return super().threshold_rule(threshold)


class _Threshold:
    def __init__(self, target_precision: float, min_anomalies: int) -> None:
        self.target_precision = target_precision
        self.min_anomalies = min_anomalies

    def __call__(
        self, parent: Scorer, X: np.ndarray, y: np.ndarray, U: np.ndarray | None
    ) -> tuple[Scorer, float]:
        scores = np.asarray(parent.decision_function(X), dtype=np.float64)
        cut = precision_threshold(scores, y, self.target_precision, self.min_anomalies)
        return parent, cut


class RecalibratedDetector(LearnedDetector):
    """The parent's scores, flagged at a threshold learned for a target precision.

    Parameters
    ----------
    base : BaseDetector
        The fitted parent.
    target_precision : float
        The share of flagged labelled rows that must be anomalies, in ``(0, 1]``.
    min_anomalies : int
        Anomalies the flagged labelled rows must hold at least.
    contamination : float or "auto"
        Used only when a job asks for it (``threshold: {contamination: ...}``).
    random_state : int, optional
        Unused (kept for the common signature).

    Notes
    -----
    Precision is measured on the labelled rows. Rows picked by a review strategy are not
    a random sample of the flagged ones; label some ``random`` rows too for an unbiased
    estimate.
    """

    name = "recalibrated"
    method = "threshold"

    def __init__(
        self,
        base: BaseDetector,
        target_precision: float = 0.9,
        min_anomalies: int = 3,
        contamination: float | str = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.base = base
        self.target_precision = target_precision
        self.min_anomalies = min_anomalies
        self.contamination = contamination
        self.random_state = random_state

    def _own_params(self) -> dict[str, Any]:
        return {
            "target_precision": self.target_precision,
            "min_anomalies": self.min_anomalies,
            "contamination": self.contamination,
            "random_state": self.random_state,
        }

    def _validate_own(self) -> None:
        if not 0 < float(self.target_precision) <= 1:
            raise DetectorError(
                f"target_precision must be in (0, 1], got {self.target_precision!r}"
            )
        if int(self.min_anomalies) < 1:
            raise DetectorError(f"min_anomalies must be at least 1, got {self.min_anomalies!r}")

    def _learner(self) -> Any:
        return _Threshold(float(self.target_precision), int(self.min_anomalies))


class _Weights:
    def __init__(self, C: float) -> None:
        self.C = C

    def __call__(
        self, parent: Scorer, X: np.ndarray, y: np.ndarray, U: np.ndarray | None
    ) -> tuple[Scorer, None]:
        return fit_member_weights(parent, X, y, self.C), None


class WeightedEnsembleDetector(LearnedDetector):
    """An ensemble's members combined with weights learned from the labels.

    Parameters
    ----------
    base : EnsembleDetector
        The fitted ensemble.
    C : float
        Inverse regularisation strength of the logistic regression.
    contamination : float or "auto"
    random_state : int, optional
        Unused (kept for the common signature).

    Attributes
    ----------
    weights_ : dict of str to float
        Each member's learned weight (after :meth:`fit`), by member name (with its
        position when a name repeats).
    """

    name = "weighted_ensemble"
    method = "ensemble_weights"

    def __init__(
        self,
        base: BaseDetector,
        C: float = 1.0,
        contamination: float | str = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.base = base
        self.C = C
        self.contamination = contamination
        self.random_state = random_state

    def _own_params(self) -> dict[str, Any]:
        return {"C": self.C, "contamination": self.contamination, "random_state": self.random_state}

    def _validate_own(self) -> None:
        if not isinstance(self.base.scorer_, EnsembleScorer):
            raise DetectorError(
                f"learned ensemble weights need an ensemble as base; {self.base.name!r} is a "
                "single detector: use method 'semi_supervised' or 'threshold'"
            )
        if float(self.C) <= 0:
            raise DetectorError(f"C must be positive, got {self.C!r}")

    def _learner(self) -> Any:
        return _Weights(float(self.C))

    @property
    def weights_(self) -> dict[str, float]:
        """Each member's learned weight, by member name."""
        self.check_fitted()
        names = [m.name for m in getattr(self.base, "members_", [])]
        weights = self.scorer_.weights  # type: ignore[attr-defined]
        if len(names) != len(weights):
            names = [f"member_{i}" for i in range(len(weights))]
        counts = {n: names.count(n) for n in names}
        labels = [f"{n}_{i}" if counts[n] > 1 else n for i, n in enumerate(names)]
        return {n: float(w) for n, w in zip(labels, weights, strict=True)}


__all__ = [
    "LEARNED_ATTRIBUTES",
    "LearnedDetector",
    "RecalibratedDetector",
    "WeightedEnsembleDetector",
]

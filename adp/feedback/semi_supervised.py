"""The semi-supervised scorer as a detector: XGBOD's idea on ADP's engine.

:class:`SemiSupervisedDetector` trains scikit-learn's ``HistGradientBoostingClassifier`` on
the labelled rows, over the unsupervised parent's score(s) beside the features
(:func:`adp.feedback.learners.fit_stacked`), and scores every row with the classifier's
log-odds that it is an anomaly: partition-parallel, partition-invariant, registrable and
usable by jobs like any detector (the shared machinery is
:class:`adp.feedback.detectors.LearnedDetector`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adp.detect.base import BaseDetector
from adp.detect.scorers import Scorer
from adp.errors import DetectorError
from adp.feedback.detectors import LearnedDetector
from adp.feedback.learners import StackedParams, fit_stacked


class _Stacked:
    def __init__(self, params: StackedParams, seed: int | None, boundary: bool) -> None:
        self.params = params
        self.seed = seed
        self.boundary = boundary

    def __call__(
        self, parent: Scorer, X: np.ndarray, y: np.ndarray, U: np.ndarray | None
    ) -> tuple[Scorer, float | None]:
        scorer = fit_stacked(parent, X, y, U, self.params, self.seed)
        return scorer, (0.0 if self.boundary else None)


class SemiSupervisedDetector(LearnedDetector):
    """A gradient-boosted classifier over the parent's score(s) and the features.

    XGBOD's idea (Zhao & Hryniewicki, 2018) with scikit-learn's
    ``HistGradientBoostingClassifier``: an ensemble parent gives one standardised score per
    member, a single detector its score. The score of a row is the classifier's log-odds
    that it is an anomaly.

    Parameters
    ----------
    base : BaseDetector
        The fitted parent.
    flag_by : {"classifier", "contamination"}
        ``classifier``: flag the rows the classifier finds more likely anomalous than not
        (log-odds >= 0, a fixed threshold); ``contamination``: flag the share
        ``contamination`` of the rows.
    use_features : bool
        Whether the classifier also sees the features (else the scores alone).
    unlabelled_rows : int
        Unlabelled rows drawn at random to join as normal rows (default none: on the ODDS
        simulation, ``adp bench feedback``, they lowered AP on most datasets).
    unlabelled_weight : float
        Each unlabelled row's weight (a labelled row weighs 1).
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization
        The classifier's.
    contamination : float or "auto"
        The share of rows to flag with ``flag_by="contamination"`` (default the parent's,
        through :func:`adp.feedback.learn.learn`).
    random_state : int, optional
    """

    name = "semi_supervised"
    method = "semi_supervised"

    def __init__(
        self,
        base: BaseDetector,
        flag_by: str = "classifier",
        use_features: bool = True,
        unlabelled_rows: int = 0,
        unlabelled_weight: float = 0.1,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 5,
        l2_regularization: float = 1.0,
        contamination: float | str = 0.1,
        random_state: int | None = None,
    ) -> None:
        self.base = base
        self.flag_by = flag_by
        self.use_features = use_features
        self.unlabelled_rows = unlabelled_rows
        self.unlabelled_weight = unlabelled_weight
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.contamination = contamination
        self.random_state = random_state

    def _own_params(self) -> dict[str, Any]:
        return {
            "flag_by": self.flag_by,
            "use_features": self.use_features,
            "unlabelled_rows": self.unlabelled_rows,
            "unlabelled_weight": self.unlabelled_weight,
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "l2_regularization": self.l2_regularization,
            "contamination": self.contamination,
            "random_state": self.random_state,
        }

    def _unlabelled_rows(self) -> int:
        return int(self.unlabelled_rows)

    def _validate_own(self) -> None:
        if self.flag_by not in ("classifier", "contamination"):
            raise DetectorError(
                f"flag_by must be 'classifier' or 'contamination', got {self.flag_by!r}"
            )
        checks = {
            "unlabelled_rows": int(self.unlabelled_rows) >= 0,
            "unlabelled_weight": float(self.unlabelled_weight) >= 0,
            "max_iter": int(self.max_iter) >= 1,
            "learning_rate": float(self.learning_rate) > 0,
            "max_leaf_nodes": int(self.max_leaf_nodes) >= 2,
            "min_samples_leaf": int(self.min_samples_leaf) >= 1,
            "l2_regularization": float(self.l2_regularization) >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise DetectorError(
                f"invalid parameters {values} for 'semi_supervised': counts and rates must be "
                "positive (max_leaf_nodes at least 2; weights and regularization may be 0)"
            )

    def _learner(self) -> Any:
        params = StackedParams(
            use_features=bool(self.use_features),
            unlabelled_weight=float(self.unlabelled_weight),
            max_iter=int(self.max_iter),
            learning_rate=float(self.learning_rate),
            max_leaf_nodes=int(self.max_leaf_nodes),
            min_samples_leaf=int(self.min_samples_leaf),
            l2_regularization=float(self.l2_regularization),
        )
        return _Stacked(params, self.random_state, self.flag_by == "classifier")


__all__ = ["SemiSupervisedDetector"]

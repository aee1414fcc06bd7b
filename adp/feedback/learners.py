"""Learning from labelled rows, on plain matrices: the three methods behind
:mod:`adp.feedback.detectors` (which draws the rows on the cluster) and the simulation of
``adp bench feedback`` (which calls them round after round).

- :func:`precision_threshold`: the lowest score whose labelled rows at or above it reach a
  target precision (the most recall that precision allows);
- :func:`fit_stacked`: XGBOD's idea with scikit-learn's ``HistGradientBoostingClassifier``
  over the parent's scores and the features; unlabelled rows drawn at random may join as
  normal rows with a small weight (anomalies are rare, so a random row is almost always
  normal: the usual positive-unlabelled assumption);
- :func:`fit_member_weights`: a logistic regression on an ensemble's standardised member
  scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adp.detect.combine import EnsembleScorer
from adp.detect.scorers import Scorer
from adp.errors import DetectorError
from adp.feedback.scorers import StackedScorer, WeightedMembersScorer, detector_scores


def check_targets(y: np.ndarray, what: str) -> np.ndarray:
    """``y`` as 0/1 integers; refuse other values, or a set without both classes."""
    y = np.asarray(y, dtype=np.float64)
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        bad = sorted(set(np.unique(y[~np.isin(y, (0.0, 1.0))]).tolist()))[:5]
        raise DetectorError(
            f"labels must be 1 (anomaly) or 0 (normal), found {bad}; map the label column "
            "to 1/0 (unlabelled rows: missing)"
        )
    anomalies, normals = int((y == 1).sum()), int((y == 0).sum())
    if anomalies == 0 or normals == 0:
        raise DetectorError(
            f"{what} needs rows labelled anomaly and rows labelled normal; it has "
            f"{anomalies} anomalies and {normals} normal rows: label more rows"
        )
    return y.astype(np.int64)


def precision_threshold(
    scores: np.ndarray, y: np.ndarray, target_precision: float, min_anomalies: int = 1
) -> float:
    """The lowest score ``t`` such that the labelled rows scoring ``>= t`` have precision
    at least ``target_precision`` and hold at least ``min_anomalies`` anomalies.

    Parameters
    ----------
    scores : ndarray
        The model's scores of the labelled rows.
    y : ndarray
        Their labels, 1 for an anomaly, 0 for a normal row.
    target_precision : float
        In ``(0, 1]``.
    min_anomalies : int
        Anomalies the flagged labelled rows must hold (a precision of one row is noise).

    Returns
    -------
    float
        The threshold: rows scoring at or above it are flagged.

    Raises
    ------
    adp.errors.DetectorError
        When no cut reaches the target, naming the best precision found.
    """
    y = check_targets(y, "threshold recalibration")
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < target_precision <= 1:
        raise DetectorError(f"target_precision must be in (0, 1], got {target_precision!r}")
    order = np.argsort(-scores, kind="stable")
    ranked, truth = scores[order], y[order]
    hits = np.cumsum(truth)
    precision = hits / np.arange(1, ranked.size + 1)
    boundary = np.r_[ranked[:-1] != ranked[1:], True]  # cut only between distinct scores
    ok = boundary & (precision >= target_precision) & (hits >= max(1, min_anomalies))
    if not ok.any():
        best = float(precision[boundary & (hits >= 1)].max())
        raise DetectorError(
            f"no threshold reaches precision {target_precision:g} on the {ranked.size} "
            f"labelled rows (the best is {best:.3f}): lower target_precision or label more rows"
        )
    return float(ranked[np.flatnonzero(ok).max()])


@dataclass(frozen=True)
class StackedParams:
    """The classifier's settings (:class:`adp.feedback.detectors.SemiSupervisedDetector`'s
    parameters of the same names)."""

    use_features: bool = True
    unlabelled_weight: float = 0.1
    max_iter: int = 100
    learning_rate: float = 0.1
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 5
    l2_regularization: float = 1.0


def fit_stacked(
    parent: Scorer,
    X: np.ndarray,
    y: np.ndarray,
    unlabelled: np.ndarray | None,
    params: StackedParams,
    random_state: int | None = None,
) -> StackedScorer:
    """Fit the XGBOD-style classifier on labelled rows (and unlabelled ones as normal).

    Parameters
    ----------
    parent : Scorer
        The unsupervised parent's fitted scorer (its scores are the first inputs).
    X, y : ndarray
        Labelled rows' features and their labels (1 anomaly, 0 normal).
    unlabelled : ndarray, optional
        Rows drawn at random from the unlabelled ones; they join as normal rows, each
        weighing ``params.unlabelled_weight`` (a labelled row weighs 1).
    params : StackedParams
    random_state : int, optional

    Returns
    -------
    StackedScorer
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    y = check_targets(y, "the semi-supervised scorer")
    weights = np.ones(len(y))
    if unlabelled is not None and len(unlabelled) and params.unlabelled_weight > 0:
        X = np.vstack([X, unlabelled])
        y = np.r_[y, np.zeros(len(unlabelled), dtype=np.int64)]
        weights = np.r_[weights, np.full(len(unlabelled), params.unlabelled_weight)]
    scorer = StackedScorer(parent, None, params.use_features)
    classifier = HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=False,
        random_state=random_state,
    )
    classifier.fit(scorer.design(X), y, sample_weight=weights)
    scorer.classifier = classifier
    return scorer


def fit_member_weights(
    parent: Scorer, X: np.ndarray, y: np.ndarray, C: float = 1.0
) -> WeightedMembersScorer:
    """Learn one weight per ensemble member: a logistic regression (classes balanced) on
    the members' standardised scores of the labelled rows.

    Raises
    ------
    adp.errors.DetectorError
        When ``parent`` is not an ensemble's scorer.
    """
    from sklearn.linear_model import LogisticRegression

    if not isinstance(parent, EnsembleScorer):
        raise DetectorError(
            "learned ensemble weights need an ensemble (adp.create_detector('ensemble', "
            f"detectors=[...])); the parent scores with {type(parent).__name__}"
        )
    y = check_targets(y, "learning ensemble weights")
    scores = np.nan_to_num(detector_scores(parent, X), nan=0.0)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=1000)
    model.fit(scores, y)
    return WeightedMembersScorer(parent, model.coef_[0], float(model.intercept_[0]))


__all__ = [
    "StackedParams",
    "check_targets",
    "fit_member_weights",
    "fit_stacked",
    "precision_threshold",
]

"""What one trial does, on a worker: fit a candidate on the search sample and judge it.

Everything here is module-level and pickles by reference, so a trial is one small task
whose only large input is the sample, already held by every worker (see
:func:`adp.tuning.engines.place_sample`). A trial never raises: whatever goes wrong while
fitting or scoring one candidate becomes a ``failed`` outcome carrying the error, so one
bad candidate cannot stop the search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from adp.detect.features import feature_matrix
from adp.detect.scorers import Scorer
from adp.detect.threshold import check_contamination, kth_largest_array
from adp.errors import ConfigError, DataError
from adp.observe.events import report
from adp.tuning.space import Candidate

SUPERVISED_METRICS: tuple[str, ...] = ("roc_auc", "average_precision", "f1")
"""Metrics that need a label column; all are higher-is-better."""


@dataclass(frozen=True)
class SearchData:
    """The search sample as every trial sees it: the feature matrix and the labels.

    Attributes
    ----------
    X : ndarray of shape (n_rows, n_features)
        Finite float64 features.
    y : ndarray of shape (n_rows,) or None
        0/1 labels (1 = anomaly) when the search has a label column.
    features : list of str
        Column names of ``X``.
    """

    X: np.ndarray
    y: np.ndarray | None
    features: list[str]

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_anomalies(self) -> int | None:
        return None if self.y is None else int(self.y.sum())


def build_search_data(
    parts: list[pd.DataFrame], features: list[str], label: str | None
) -> SearchData:
    """Concatenate the sampled partitions into a :class:`SearchData` (runs on a worker).

    Raises
    ------
    adp.errors.DataError
        For missing or infinite feature values, or a label column that is not 0/1.
    """
    sample = pd.concat(parts) if len(parts) > 1 else parts[0]
    X = feature_matrix(sample, features, where="search sample")
    y = None
    if label is not None:
        values = sample[label]
        if values.isna().any():
            raise DataError(
                f"label column {label!r} has {int(values.isna().sum())} missing values "
                "in the search sample; drop or fill them first"
            )
        distinct = set(pd.unique(values).tolist())
        if not distinct <= {0, 1}:
            shown = sorted(map(str, distinct))[:5]
            raise DataError(
                f"label column {label!r} must hold 0 (normal) and 1 (anomaly), or booleans; "
                f"found values {shown}"
            )
        y = values.to_numpy().astype(np.int8)
    return SearchData(X, y, list(features))


@dataclass
class TrialOutcome:
    """The result of one trial; becomes one leaderboard row.

    ``status`` is ``"ok"``, ``"failed"`` (the candidate raised; ``error`` says what),
    ``"skipped"`` (the detector is not available here) or ``"cancelled"`` (the time budget
    ran out first). ``score`` is the metric (mean over folds) for a labelled search, or the
    unsupervised criterion once :mod:`adp.tuning.selection` has filled it in.
    """

    trial: int
    detector: str
    params: dict[str, Any]
    status: str = "ok"
    score: float = math.nan
    score_std: float = math.nan
    fit_seconds: float = math.nan
    trial_seconds: float = math.nan
    error: str | None = None
    scores: np.ndarray | None = field(default=None, repr=False)

    def without_scores(self) -> TrialOutcome:
        return replace(self, scores=None)


def contamination_of(params: dict[str, Any], default: float) -> tuple[dict[str, Any], float]:
    """Split ``contamination`` (searchable like any parameter) from the estimator's own."""
    params = dict(params)
    share = check_contamination(params.pop("contamination", default))
    if isinstance(share, str):
        raise ConfigError("a search needs contamination as a share in (0, 0.5], not 'auto'")
    return params, share


def fit_candidate(
    detector: str,
    params: dict[str, Any],
    contamination: float,
    X: np.ndarray,
    seed: int | None = None,
) -> tuple[Scorer, float]:
    """Fit ``detector`` on ``X`` as :meth:`adp.Detector.fit` does (same row caps for
    quadratic detectors); return its partition-invariant scorer and the fit seconds."""
    from adp.detect.fitting import fit_matrix
    from adp.detect.registry import detector_info

    result = fit_matrix(detector_info(detector), params, contamination, X, seed=seed)
    return result.scorer, result.seconds


def supervised_score(
    metric: str,
    y: np.ndarray,
    scores: np.ndarray,
    threshold: float | None = None,
) -> float:
    """``roc_auc``, ``average_precision`` or ``f1`` of ``scores`` against labels ``y``.

    ``f1`` flags rows whose score is at least ``threshold`` (ADP's convention), where the
    threshold is the contamination threshold of the *training* scores.
    """
    from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

    if metric == "roc_auc":
        return float(roc_auc_score(y, scores))
    if metric == "average_precision":
        return float(average_precision_score(y, scores))
    if metric == "f1":
        if threshold is None:
            raise ConfigError(
                "metric 'f1' needs the contamination threshold of the training scores"
            )
        return float(f1_score(y, scores >= threshold, zero_division=0))
    raise ConfigError(f"unknown metric {metric!r}; use one of {list(SUPERVISED_METRICS)}")


def cv_splits(y: np.ndarray, cv: int | None, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled folds (the same for every trial of a search), or none."""
    from sklearn.model_selection import StratifiedKFold

    if cv is None or cv < 2:
        everything = np.arange(y.size)
        return [(everything, everything)]
    folds = StratifiedKFold(n_splits=cv, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(y.size), y))


def _cancelled(outcome: TrialOutcome, started: float) -> TrialOutcome:
    outcome.status = "cancelled"
    outcome.error = "the time budget ran out before this trial finished"
    outcome.trial_seconds = time.perf_counter() - started
    return outcome


def run_trial(
    data: SearchData,
    candidate: Candidate,
    metric: str,
    cv: int | None,
    cv_seed: int,
    contamination: float,
    deadline: float | None = None,
) -> TrialOutcome:
    """Fit and judge one candidate on the sample; never raises.

    Parameters
    ----------
    data : SearchData
        The sample (a future resolved on the worker).
    candidate : Candidate
        What to fit.
    metric : str
        A supervised metric (needs ``data.y``), or anything else for an unsupervised
        trial, which fits once on the whole sample and keeps the sample's scores.
    cv : int or None
        Folds for a labelled trial; ``None`` or 1 judges on the rows it was fitted on.
    cv_seed : int
        Seed of the folds (and of the row cap of quadratic detectors), shared by every
        trial of a search.
    contamination : float
        Used unless the candidate's parameters set their own.
    deadline : float, optional
        ``time.time()`` after which the trial stops at the next fold and reports itself
        cancelled, so an abandoned trial frees its worker early.
    """
    started = time.perf_counter()
    outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
    if candidate.skip_reason is not None:
        outcome.status, outcome.error = "skipped", candidate.skip_reason
        return outcome
    params, share = contamination_of(candidate.params, contamination)
    fit_times: list[float] = []
    try:
        if metric in SUPERVISED_METRICS:
            if data.y is None:
                raise ConfigError(f"metric {metric!r} needs a label column")
            fold_scores = []
            for train, test in cv_splits(data.y, cv, cv_seed):
                if deadline is not None and time.time() > deadline:
                    return _cancelled(outcome, started)
                scorer, seconds = fit_candidate(
                    candidate.detector, params, share, data.X[train], cv_seed
                )
                fit_times.append(seconds)
                threshold = None
                if metric == "f1":
                    threshold = kth_largest_array(scorer.decision_function(data.X[train]), share)
                test_scores = scorer.decision_function(data.X[test])
                fold_scores.append(supervised_score(metric, data.y[test], test_scores, threshold))
            outcome.score = float(np.mean(fold_scores))
            outcome.score_std = float(np.std(fold_scores))
        else:
            if deadline is not None and time.time() > deadline:
                return _cancelled(outcome, started)
            scorer, seconds = fit_candidate(candidate.detector, params, share, data.X, cv_seed)
            fit_times.append(seconds)
            scores = np.asarray(scorer.decision_function(data.X), dtype=np.float64)
            if not np.isfinite(scores).all():
                raise DataError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or inf")
            outcome.scores = scores
    except Exception as exc:  # noqa: BLE001 - a failing candidate is a result, not a crash
        outcome.status = "failed"
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.fit_seconds = float(np.mean(fit_times)) if fit_times else math.nan
    outcome.trial_seconds = time.perf_counter() - started
    report(search_trials=1, fit_seconds=float(np.sum(fit_times)) if fit_times else 0.0)
    return outcome


__all__ = [
    "SUPERVISED_METRICS",
    "SearchData",
    "TrialOutcome",
    "build_search_data",
    "cv_splits",
    "fit_candidate",
    "run_trial",
    "supervised_score",
]

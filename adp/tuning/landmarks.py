"""Landmarkers: small detectors fitted on a dataset's landmark sample, whose score
statistics and mutual agreement are meta-features (:mod:`adp.tuning.metafeatures`)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from adp.errors import DataError

LANDMARKERS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("iforest", "isolation_forest", {"n_estimators": 50, "max_samples": 128}),
    ("hbos", "hbos", {}),
    ("pca", "pca", {}),
    ("knn", "knn", {"n_neighbors": 10}),
)
"""``(short name, detector, parameters)`` of the landmarkers fitted on the landmark sample."""


def _landmark_names() -> tuple[str, ...]:
    names = []
    for short, _, _ in LANDMARKERS:
        names += [f"{short}_score_skew", f"{short}_outlier_share", f"{short}_top_gap"]
    pairs = [
        f"corr_{a[0]}_{b[0]}"
        for i, a in enumerate(LANDMARKERS)
        for b in LANDMARKERS[i + 1 :]  # noqa: E203 - ruff format's slice spacing
    ]
    return (*names, *pairs, "mean_landmark_corr")


LANDMARK_FEATURES: tuple[str, ...] = _landmark_names()


def robust_z(values: np.ndarray) -> np.ndarray:
    """Absolute robust z-scores, ``|x - median| / (1.4826 MAD)``, column-wise."""
    median = np.median(values, axis=0)
    mad = 1.4826 * np.median(np.abs(values - median), axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(values - median) / mad
    # A feature whose MAD is 0 (mostly one value): every other value is a tail value.
    return np.where(mad > 0, z, np.where(values != median, np.inf, 0.0))


def _score_stats(scores: np.ndarray) -> tuple[float, float, float]:
    from scipy.stats import skew

    std = scores.std()
    if not std > 0:
        return 0.0, 0.0, 0.0
    z = robust_z(scores[:, None])[:, 0]
    top = np.sort(scores)[-max(1, math.ceil(0.05 * scores.size)) :]  # noqa: E203
    return (
        float(skew(scores)),
        float(np.mean(z > 3.5)),
        float((top.mean() - np.median(scores)) / std),
    )


def landmark_features(X: np.ndarray, seed: int) -> dict[str, float]:
    """Fit each landmarker on ``X`` and score ``X``; their score statistics and agreement.

    Constant columns of ``X`` are left out (they carry nothing, and break PCA's scaling). A
    landmarker that fails leaves NaN in its values (the selector imputes them).
    """
    from adp.tuning.selection import spearman_matrix
    from adp.tuning.trials import fit_candidate

    varying = X.std(axis=0) > 0
    X = X[:, varying] if varying.any() else X
    out: dict[str, float] = {}
    panel: list[np.ndarray | None] = []
    for short, detector, params in LANDMARKERS:
        full = dict(params)
        if detector == "isolation_forest":
            full["random_state"] = seed
            full["max_samples"] = min(int(full["max_samples"]), X.shape[0])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a landmarker's numerical complaints
                scorer, _ = fit_candidate(detector, full, 0.1, X, seed)
                scores = np.asarray(scorer.decision_function(X), dtype=np.float64)
            if not np.isfinite(scores).all():
                raise DataError("non-finite landmark scores")
        except Exception:  # noqa: BLE001 - a failed landmarker is a missing value
            scores = None
        panel.append(scores)
        stats = _score_stats(scores) if scores is not None else (math.nan,) * 3
        for suffix, value in zip(("score_skew", "outlier_share", "top_gap"), stats, strict=True):
            out[f"{short}_{suffix}"] = value
    ok = [i for i, s in enumerate(panel) if s is not None]
    corr = np.full((len(panel), len(panel)), math.nan)
    if len(ok) > 1:
        corr[np.ix_(ok, ok)] = spearman_matrix(np.stack([panel[i] for i in ok]))  # type: ignore[misc]
    pairs = []
    for i, a in enumerate(LANDMARKERS):
        for j in range(i + 1, len(LANDMARKERS)):
            out[f"corr_{a[0]}_{LANDMARKERS[j][0]}"] = float(corr[i, j])
            pairs.append(corr[i, j])
    finite = [p for p in pairs if math.isfinite(p)]
    out["mean_landmark_corr"] = float(np.mean(finite)) if finite else math.nan
    return out


__all__ = ["LANDMARKERS", "LANDMARK_FEATURES", "landmark_features", "robust_z"]

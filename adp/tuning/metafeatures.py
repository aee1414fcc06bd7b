"""Meta-features of a dataset, computed partition-parallel on the cluster.

A meta-feature describes a whole dataset in one number (its size, how skewed its features
are, how correlated, how discrete, how a few cheap detectors score it). The label-free
selector (:mod:`adp.tuning.selector`) compares a new dataset's meta-features with those of
labelled benchmark datasets, as MetaOD (Zhao, Rossi & Akoglu, NeurIPS 2021) does.

Two kinds, gathered in one :func:`dask.compute`:

* **Moments of the whole dataset**: every partition reduces itself to its row count,
  per-feature mean, central moments ``M2..M4``, minimum and maximum, and the co-moment
  matrix (``O(d^2)`` floats); the partials merge pairwise in a tree with the exact parallel
  formulas of Pébay (2008) and Chan et al. (1979). Nothing but these small arrays leaves a
  worker, and the result does not depend on the partitioning.
* **A landmark sample** of at most ``landmark_rows`` rows (uniform, drawn on the workers with
  :func:`adp.detect.sampling.uniform_sample`): per-feature discreteness and robust tails,
  and *landmarkers*, small detectors fitted and scored on the sample in one task whose
  score statistics and pairwise rank agreement are meta-features too.

The cost is one pass over the data (the moments) plus a few small fits on at most
``landmark_rows`` rows; ``adp bench selection`` reports it next to one default fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect.features import feature_matrix
from adp.detect.sampling import uniform_sample
from adp.errors import DataError
from adp.tuning.landmarks import LANDMARK_FEATURES, LANDMARKERS, landmark_features, robust_z

LANDMARK_ROWS = 1024
"""Rows of the landmark sample (the same for benchmark datasets and new ones, so that
landmarker statistics compare)."""

MOMENT_FEATURES: tuple[str, ...] = (
    "log_rows",
    "log_features",
    "log_rows_per_feature",
    "constant_share",
    "mean_abs_skew",
    "max_abs_skew",
    "mean_log_kurtosis",
    "max_log_kurtosis",
    "mean_log_range",
    "mean_abs_corr",
    "max_abs_corr",
    "high_corr_share",
    "top_eigen_share",
    "effective_rank_share",
)
SAMPLE_FEATURES: tuple[str, ...] = (
    "mean_unique_share",
    "low_cardinality_share",
    "mean_tail_share",
    "max_tail_share",
)


NAMES: tuple[str, ...] = (*MOMENT_FEATURES, *SAMPLE_FEATURES, *LANDMARK_FEATURES)
"""Every meta-feature, in the order of :attr:`MetaFeatures.vector`."""


@dataclass
class MetaFeatures:
    """A dataset's meta-features.

    Attributes
    ----------
    values : dict of str to float
        One value per name of :data:`NAMES` (NaN where a landmarker failed).
    rows, features : int
        Rows (finite ones) and feature columns of the dataset.
    landmark_rows : int
        Rows of the landmark sample.
    seconds : float
        Wall time of the computation (client side, the cluster's work included).
    """

    values: dict[str, float]
    rows: int
    features: int
    landmark_rows: int
    seconds: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def vector(self) -> np.ndarray:
        """The values in the order of :data:`NAMES`."""
        return np.array([self.values.get(name, math.nan) for name in NAMES], dtype=np.float64)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe; NaN becomes None)."""
        return {
            "rows": self.rows,
            "features": self.features,
            "landmark_rows": self.landmark_rows,
            "seconds": None if not math.isfinite(self.seconds) else round(self.seconds, 4),
            "values": {k: (None if not math.isfinite(v) else v) for k, v in self.values.items()},
        }


# --------------------------------------------------------------------------- moments


def partial_moments(part: pd.DataFrame, features: list[str]) -> dict[str, Any]:
    """One partition's moment partials (runs on a worker).

    Raises
    ------
    adp.errors.DataError
        For missing or infinite feature values, naming the columns.
    """
    X = feature_matrix(part, features, where="meta-features")
    n = X.shape[0]
    d = len(features)
    if n == 0:
        zeros = np.zeros(d)
        return {
            "n": 0,
            "mean": zeros,
            "m2": zeros,
            "m3": zeros,
            "m4": zeros,
            "min": np.full(d, np.inf),
            "max": np.full(d, -np.inf),
            "co": np.zeros((d, d)),
        }
    mean = X.mean(axis=0)
    c = X - mean
    c2 = c * c
    return {
        "n": n,
        "mean": mean,
        "m2": c2.sum(axis=0),
        "m3": (c2 * c).sum(axis=0),
        "m4": (c2 * c2).sum(axis=0),
        "min": X.min(axis=0),
        "max": X.max(axis=0),
        "co": c.T @ c,
    }


def merge_moments(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Merge two partials exactly (Pébay 2008, eq. 3.1-3.3; Chan et al. for co-moments)."""
    na, nb = a["n"], b["n"]
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    delta = b["mean"] - a["mean"]
    m2 = a["m2"] + b["m2"] + delta**2 * na * nb / n
    m3 = (
        a["m3"]
        + b["m3"]
        + delta**3 * na * nb * (na - nb) / n**2
        + 3 * delta * (na * b["m2"] - nb * a["m2"]) / n
    )
    m4 = (
        a["m4"]
        + b["m4"]
        + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
        + 6 * delta**2 * (na * na * b["m2"] + nb * nb * a["m2"]) / n**2
        + 4 * delta * (na * b["m3"] - nb * a["m3"]) / n
    )
    return {
        "n": n,
        "mean": a["mean"] + delta * nb / n,
        "m2": m2,
        "m3": m3,
        "m4": m4,
        "min": np.minimum(a["min"], b["min"]),
        "max": np.maximum(a["max"], b["max"]),
        "co": a["co"] + b["co"] + np.outer(delta, delta) * na * nb / n,
    }


def tree_moments(parts: list[Delayed], features: list[str]) -> Delayed:
    """The merged moments of ``parts`` (lazy), reduced pairwise in a tree."""
    level = [dask.delayed(partial_moments)(p, features) for p in parts]
    while len(level) > 1:
        nxt = [
            dask.delayed(merge_moments)(a, b) for a, b in zip(level[::2], level[1::2], strict=False)
        ]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def moment_features(moments: dict[str, Any]) -> dict[str, float]:
    """The whole-dataset meta-features from merged moments."""
    n = int(moments["n"])
    d = int(moments["mean"].size)
    var = moments["m2"] / n
    live = var > 1e-12 * np.maximum(1.0, moments["mean"] ** 2)
    out = {
        "log_rows": math.log10(max(n, 1)),
        "log_features": math.log10(d),
        "log_rows_per_feature": math.log10(max(n, 1) / d),
        "constant_share": float(1 - live.mean()),
    }
    if live.any():
        v = var[live]
        skew = (moments["m3"][live] / n) / v**1.5
        kurt = (moments["m4"][live] / n) / v**2 - 3.0
        log_kurt = np.log1p(np.maximum(kurt, 0.0))
        spread = (moments["max"][live] - moments["min"][live]) / np.sqrt(v)
        out.update(
            mean_abs_skew=float(np.mean(np.abs(skew))),
            max_abs_skew=float(np.max(np.abs(skew))),
            mean_log_kurtosis=float(np.mean(log_kurt)),
            max_log_kurtosis=float(np.max(log_kurt)),
            mean_log_range=float(np.mean(np.log1p(spread))),
        )
        co = moments["co"][np.ix_(live, live)]
        scale = np.sqrt(np.diag(co))
        corr = np.clip(co / np.outer(scale, scale), -1.0, 1.0)
        k = corr.shape[0]
        if k > 1:
            off = np.abs(corr[~np.eye(k, dtype=bool)])
            out.update(
                mean_abs_corr=float(off.mean()),
                max_abs_corr=float(off.max()),
                high_corr_share=float((off > 0.5).mean()),
            )
        else:
            out.update(mean_abs_corr=0.0, max_abs_corr=0.0, high_corr_share=0.0)
        eigen = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
        share = eigen / eigen.sum()
        entropy = -float(np.sum(share[share > 0] * np.log(share[share > 0])))
        out.update(
            top_eigen_share=float(share.max()),
            effective_rank_share=float(math.exp(entropy) / k),
        )
    return {name: float(out.get(name, 0.0)) for name in MOMENT_FEATURES}


# --------------------------------------------------------------------------- the sample


def sample_features(X: np.ndarray) -> dict[str, float]:
    """Discreteness and robust tails of each feature, over the landmark sample."""
    n = X.shape[0]
    unique = np.array([np.unique(X[:, j]).size for j in range(X.shape[1])])
    tails = (robust_z(X) > 3.5).mean(axis=0)
    return {
        "mean_unique_share": float(np.mean(unique / n)),
        "low_cardinality_share": float(np.mean(unique <= 10)),
        "mean_tail_share": float(np.mean(tails)),
        "max_tail_share": float(np.max(tails)),
    }


def sample_meta(parts: list[pd.DataFrame], features: list[str], seed: int) -> dict[str, Any]:
    """The landmark sample's meta-features (runs on a worker); also returns the sample."""
    sample = pd.concat(parts) if len(parts) > 1 else parts[0]
    X = feature_matrix(sample, features, where="landmark sample")
    return {"values": {**sample_features(X), **landmark_features(X, seed)}, "X": X}


# --------------------------------------------------------------------------- the API


def metafeature_graph(
    ddf: dd.DataFrame,
    features: list[str],
    landmark_rows: int = LANDMARK_ROWS,
    random_state: int | None = None,
) -> tuple[Delayed, Delayed, int]:
    """The lazy parts of :func:`compute_metafeatures`: moments, sample meta, sample size."""
    frame = ddf[features]
    moments = tree_moments(frame.to_delayed(), features)
    parts, size, _ = uniform_sample(frame, landmark_rows, random_state)
    seed = int(np.random.SeedSequence(random_state).generate_state(1)[0] % (2**31 - 1))
    sampled = dask.delayed(sample_meta, pure=False)(parts, features, seed)
    return moments, sampled, size


def compute_metafeatures(
    ddf: dd.DataFrame,
    features: list[str] | None = None,
    landmark_rows: int = LANDMARK_ROWS,
    random_state: int | None = None,
    *,
    keep_sample: bool = False,
) -> MetaFeatures:
    """Compute a dataset's meta-features on the current Dask scheduler.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data, with finite numeric features (apply a missing-value policy first).
    features : list of str, optional
        Feature columns; default every column of ``ddf``.
    landmark_rows : int
        Size of the landmark sample.
    random_state : int, optional
        Seeds the landmark sample and the landmarkers.
    keep_sample : bool
        Keep the landmark sample's matrix in ``extra["X"]`` (for the criteria check of
        :func:`adp.tuning.selecting.select_detector`).

    Returns
    -------
    MetaFeatures

    Raises
    ------
    adp.errors.DataError
        For an empty dataset, missing columns or non-finite feature values.
    """
    started = time.perf_counter()
    columns = list(ddf.columns) if features is None else list(features)
    missing = [c for c in columns if c not in ddf.columns]
    if missing:
        raise DataError(f"meta-features: columns {missing} are not in the data")
    moments_graph, sampled_graph, size = metafeature_graph(
        ddf, columns, landmark_rows, random_state
    )
    moments, sampled = dask.compute(moments_graph, sampled_graph)
    if moments["n"] == 0:
        raise DataError("meta-features: the dataset has no rows")
    values = {**moment_features(moments), **sampled["values"]}
    result = MetaFeatures(
        values={name: float(values.get(name, math.nan)) for name in NAMES},
        rows=int(moments["n"]),
        features=len(columns),
        landmark_rows=int(size),
        seconds=time.perf_counter() - started,
    )
    if keep_sample:
        result.extra["X"] = sampled["X"]
    return result


__all__ = [
    "LANDMARKERS",
    "LANDMARK_ROWS",
    "NAMES",
    "MetaFeatures",
    "compute_metafeatures",
    "merge_moments",
    "moment_features",
    "partial_moments",
    "sample_features",
]

"""Fit strategies: how the sample drawn on the workers becomes one fitted, shippable model.

- ``sample``: the whole sample goes to one task, which fits one model (the default).
- ``distributed`` (isolation forests): the sample parts are split into ``n_models`` groups of
  partitions; each group grows its share of the trees where its rows are, and the trees are
  merged into one forest (:mod:`adp.detect.forest`).
- ``bagging`` (any detector): one model per group of partitions, each fitted on that group's
  sample rows; their scores are standardised with each model's training-score mean and
  standard deviation and averaged (feature-bagging / SUOD style).

Every strategy returns a lazy :class:`FitResult`; nothing but the fitted model and a few
statistics travels back to the client.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect import forest
from adp.detect.combine import EnsembleScorer, TrainingStats
from adp.detect.features import feature_matrix
from adp.detect.registry import DetectorInfo
from adp.detect.scorers import Scorer
from adp.errors import DetectorError

STRATEGIES = ("sample", "distributed", "bagging")


@dataclass
class FitResult:
    """A fitted model and what ADP keeps about its training rows.

    Attributes
    ----------
    scorer : Scorer
        What the workers score rows with.
    reference : ndarray
        Per-feature medians of the training rows (the baseline of ablation explanations).
    stats : TrainingStats or None
        Statistics of the model's scores of its training rows (ensembles and bagging).
    n_rows : int
        Rows the model was fitted on.
    seconds : float
        Time spent fitting (summed over the parts for distributed strategies).
    n_models : int
        Models fitted (1 for ``sample``).
    """

    scorer: Scorer
    reference: np.ndarray
    stats: TrainingStats | None
    n_rows: int
    seconds: float
    n_models: int = 1


def _matrix(parts: Sequence[pd.DataFrame], features: list[str]) -> np.ndarray:
    sample = pd.concat(parts) if len(parts) > 1 else parts[0]
    return feature_matrix(sample, features, where="fit sample")


def _cap_rows(X: np.ndarray, info: DetectorInfo, seed: int | None) -> np.ndarray:
    limit = info.max_fit_rows
    if limit is None or X.shape[0] <= limit:
        return X
    rows = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=limit, replace=False))
    return X[rows]


def fit_matrix(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    X: np.ndarray,
    with_stats: bool = False,
    seed: int | None = None,
) -> FitResult:
    """Fit one model on the matrix ``X`` and wrap it as a :class:`FitResult`."""
    X = _cap_rows(X, info, seed)
    started = time.perf_counter()
    estimator = info.build(params, contamination, n_features=X.shape[1])
    try:
        if info.fitter is not None:
            info.fitter(estimator, X)
        else:
            estimator.fit(X)
    except (ValueError, TypeError, MemoryError) as exc:
        raise DetectorError(
            f"fitting {info.name!r} on {X.shape[0]} rows x {X.shape[1]} features failed: {exc}"
        ) from exc
    scorer = info.scorer(estimator, X)
    seconds = time.perf_counter() - started
    stats = None
    if with_stats:
        stats = TrainingStats.from_scores(scorer.decision_function(X), contamination)
    return FitResult(scorer, np.median(X, axis=0), stats, X.shape[0], seconds)


def _fit_parts(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    parts: list[pd.DataFrame],
    features: list[str],
    with_stats: bool,
    seed: int | None,
) -> FitResult:
    return fit_matrix(info, params, contamination, _matrix(parts, features), with_stats, seed)


def plan_single_fit(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    parts: list[Delayed],
    features: list[str],
    with_stats: bool = False,
    seed: int | None = None,
) -> Delayed:
    """One model on the whole sample, fitted in one task (the ``sample`` strategy).

    Not :func:`adp.detect.sampling.plan_sample`, which plans the sample itself.
    """
    return dask.delayed(_fit_parts, pure=False)(
        info, params, contamination, parts, features, with_stats, seed
    )


def group_parts(counts: Sequence[int], n_groups: int) -> list[list[int]]:
    """Split part indices, in order, into at most ``n_groups`` groups of similar row counts."""
    n_groups = max(1, min(n_groups, len(counts)))
    bounds = np.cumsum(counts) / max(1, sum(counts)) * n_groups
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for i, bound in enumerate(bounds):
        groups[min(n_groups - 1, int(np.ceil(bound)) - 1)].append(i)
    return [g for g in groups if g]


def _seeds(random_state: int | None, n: int) -> list[int]:
    children = np.random.SeedSequence(random_state).spawn(n)
    return [int(c.generate_state(1)[0]) for c in children]


def _grow_part(
    parts: list[pd.DataFrame],
    features: list[str],
    n_trees: int,
    max_samples: int,
    params: dict[str, Any],
    seed: int,
) -> tuple[Any, np.ndarray, int, float]:
    X = _matrix(parts, features)
    started = time.perf_counter()
    grown = forest.grow(X, n_trees, max_samples, params, seed)
    return grown, np.median(X, axis=0), X.shape[0], time.perf_counter() - started


def _part_scores(merged: Any, parts: list[pd.DataFrame], features: list[str]) -> np.ndarray:
    # scikit-learn's score_samples, compiled when the forest allows it (identical scores).
    scorer = forest.ForestScorer(merged, pyod_scale=False)
    return -scorer.decision_function(_matrix(parts, features))


def _finish_forest(
    info: DetectorInfo,
    merged: Any,
    grown: list[tuple[Any, np.ndarray, int, float]],
    scores: list[np.ndarray],
    contamination: float,
) -> FitResult:
    sk_contamination: float | str = contamination
    if info.name == "sklearn_isolation_forest":
        sk_contamination = "auto"
    forest.set_offset(merged, scores, sk_contamination)
    rows = np.array([g[2] for g in grown], dtype=np.float64)
    reference = np.average(np.vstack([g[1] for g in grown]), axis=0, weights=rows)
    scorer = forest.ForestScorer(merged, pyod_scale=info.name == "isolation_forest")
    return FitResult(
        scorer, reference, None, int(rows.sum()), float(sum(g[3] for g in grown)), len(grown)
    )


def plan_distributed(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    parts: list[Delayed],
    counts: Sequence[int],
    features: list[str],
    n_models: int,
    random_state: int | None,
) -> Delayed:
    """Grow an isolation forest's trees on ``n_models`` groups of partitions and merge them."""
    if "distributed" not in info.strategies:
        raise DetectorError(
            f"strategy='distributed' is for isolation forests; {info.name!r} supports "
            f"{', '.join(info.strategies)}"
        )
    settings = forest.forest_params(params)
    groups = group_parts(counts, n_models)
    smallest = min(sum(counts[i] for i in g) for g in groups)
    max_samples = forest.resolve_max_samples(settings.get("max_samples", "auto"), smallest)
    shares = forest.tree_shares(int(settings.get("n_estimators", 100)), len(groups))
    if random_state is None:
        random_state = settings.get("random_state")
    seeds = _seeds(random_state, len(groups))
    grown = [
        dask.delayed(_grow_part, pure=False)(
            [parts[i] for i in g], features, share, max_samples, settings, seed
        )
        for g, share, seed in zip(groups, shares, seeds, strict=True)
    ]
    merged = dask.delayed(forest.merge)([dask.delayed(operator.getitem)(g, 0) for g in grown])
    scores = [dask.delayed(_part_scores)(merged, [parts[i] for i in g], features) for g in groups]
    return dask.delayed(_finish_forest)(info, merged, grown, scores, contamination)


def _bag(results: list[FitResult]) -> FitResult:
    stats = [r.stats for r in results]
    scorer = EnsembleScorer([r.scorer for r in results], stats, "average", "zscore")  # type: ignore[arg-type]
    rows = np.array([r.n_rows for r in results], dtype=np.float64)
    reference = np.average(np.vstack([r.reference for r in results]), axis=0, weights=rows)
    return FitResult(
        scorer,
        reference,
        None,
        int(rows.sum()),
        float(sum(r.seconds for r in results)),
        len(results),
    )


def plan_bagging(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    parts: list[Delayed],
    counts: Sequence[int],
    features: list[str],
    n_models: int,
    random_state: int | None,
) -> Delayed:
    """One model per group of partitions, combined by averaging standardised scores."""
    groups = group_parts(counts, n_models)
    if random_state is None:
        random_state = params.get("random_state")
    seeds = _seeds(random_state, len(groups))
    member_params = []
    accepts_seed = "random_state" in info.valid_params()
    for seed in seeds:
        p = dict(params)
        if accepts_seed:  # each member its own stream, reproducible from one seed
            p["random_state"] = seed % (2**31)
        member_params.append(p)
    results = [
        dask.delayed(_fit_parts, pure=False)(
            info, p, contamination, [parts[i] for i in g], features, True, seed
        )
        for g, p, seed in zip(groups, member_params, seeds, strict=True)
    ]
    return dask.delayed(_bag)(results)

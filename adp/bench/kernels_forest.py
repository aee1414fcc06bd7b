"""Isolation-forest scoring: scikit-learn's ``score_samples`` against the compiled kernel.

Both score the same float32 rows with the same fitted forest in this process (one thread,
as on a dask worker); the compiled kernel is run once first so its JIT compilation (or its
load from numba's cache), reported apart, is not timed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from adp.bench.measure import best_of, timed
from adp.detect.treescore import CompiledForest

FIT_ROWS = 100_000


def measure_forest(
    rows: int = 2_000_000,
    features: int = 20,
    n_estimators: int = 100,
    repeats: int = 3,
    max_samples: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Seconds to score ``rows`` standard-normal rows with scikit-learn and compiled.

    Parameters
    ----------
    rows, features : int
        The scored matrix (float32, C-contiguous).
    n_estimators, max_samples : int
        The forest, fitted on 100000 other standard-normal rows.
    repeats : int
        Timings per scorer; the best is kept.
    seed : int
        Seeds the data and the forest.

    Returns
    -------
    dict
        ``sklearn_seconds``, ``compiled_seconds``, ``speedup`` (their ratio),
        ``first_call_seconds`` (JIT compile or cache load), ``max_abs_diff`` of the scores,
        and the parameters.
    """
    rng = np.random.default_rng(seed)
    forest = IsolationForest(
        n_estimators=n_estimators, max_samples=max_samples, random_state=seed, n_jobs=1
    ).fit(rng.standard_normal((FIT_ROWS, features)))
    X = rng.standard_normal((rows, features), dtype=np.float32)
    compiled = CompiledForest.from_forest(forest)
    with timed() as first_call:
        compiled.score_samples(X[:1])
    sklearn_seconds, expected = best_of(lambda: forest.score_samples(X), repeats)
    compiled_seconds, got = best_of(lambda: compiled.score_samples(X), repeats)
    diff = np.max(np.abs(got - expected), initial=0.0)
    return {
        "rows": rows,
        "features": features,
        "n_estimators": n_estimators,
        "max_samples": max_samples,
        "depth": compiled.depth,
        "sklearn_seconds": sklearn_seconds,
        "compiled_seconds": compiled_seconds,
        "speedup": sklearn_seconds / compiled_seconds,
        "first_call_seconds": first_call.seconds,
        "max_abs_diff": float(diff),
    }

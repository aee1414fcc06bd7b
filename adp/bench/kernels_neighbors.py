"""Neighbour scoring: PyOD's ``KNN`` / ``LOF`` ``decision_function`` against ADP's exact
blocked search (:mod:`adp.detect.neighbor_scorers`).

Both score standard-normal rows against the same fitted model in this process with BLAS and
OpenMP pinned to one thread (per-core figures). PyOD's scoring is brute force (more than 15
features) and costs the same per row whatever the batch, so it is timed on at most
``reference_rows`` of the rows and reported per million rows; ADP's scorer is timed on all
of them. The scores are compared on the rows both scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from adp.bench.measure import best_of, timed

FIT_ROWS = 100_000
EXACT_FIT_ROWS = 5_000


def measure_neighbors(
    detector: str = "knn",
    rows: int = 1_000_000,
    features: int = 20,
    repeats: int = 1,
    fit_rows: int = FIT_ROWS,
    reference_rows: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Seconds per million rows for PyOD's scoring and ADP's, one thread each.

    Parameters
    ----------
    detector : {"knn", "lof"}
        PyOD's ``KNN()`` (k = 5, largest) or ``LOF()`` (k = 20), default parameters.
    rows, features : int
        The scored matrix (ADP scores all of it).
    repeats : int
        Timings per scorer; the best is kept.
    fit_rows : int
        Rows the model is fitted on (at most ``rows``, so small runs stay small).
    reference_rows : int
        At most this many rows are scored by PyOD (its cost per row does not depend on the
        batch; it is reported per million rows).
    seed : int
        Seeds the data.

    Returns
    -------
    dict
        ``pyod_seconds_per_million``, ``adp_seconds_per_million``, ``speedup`` (their
        ratio), ``adp_seconds`` (all rows), ``first_call_seconds`` (compilation or cache
        load), ``max_abs_diff`` and ``max_rel_diff`` against PyOD on the shared rows, and
        ``exact_max_abs_diff``: the same against PyOD with an exact (ball-tree) search, fitted
        on the first 5000 fit rows and scoring the first 5000 rows.
    """
    from pyod.models.knn import KNN
    from pyod.models.lof import LOF

    from adp.detect.neighbor_scorers import knn_scorer, lof_scorer

    cls, factory = {"knn": (KNN, knn_scorer), "lof": (LOF, lof_scorer)}[detector]
    rng = np.random.default_rng(seed)
    fit_rows = min(fit_rows, rows)
    X_fit = rng.standard_normal((fit_rows, features))
    X = rng.standard_normal((rows, features))
    shared = X[: min(rows, reference_rows)]
    with threadpool_limits(1):
        model = cls().fit(X_fit)
        scorer = factory(model, X_fit)
        with timed() as first_call:
            scorer.decision_function(X[:10])
        pyod_seconds, expected = best_of(lambda: model.decision_function(shared), repeats)
        adp_seconds, got = best_of(lambda: scorer.decision_function(X), repeats)
        # PyOD with an exact search (a ball tree; slow in 20 dimensions, so a small fit).
        exact_fit, exact_rows = X_fit[:EXACT_FIT_ROWS], shared[:EXACT_FIT_ROWS]
        exact = cls(algorithm="ball_tree").fit(exact_fit)
        exact_diff = np.abs(
            factory(exact, exact_fit).decision_function(exact_rows)
            - exact.decision_function(exact_rows)
        )
    diff = np.abs(got[: len(shared)] - expected)
    pyod_rate = pyod_seconds / len(shared) * 1e6
    adp_rate = adp_seconds / rows * 1e6
    return {
        "detector": detector,
        "rows": rows,
        "features": features,
        "fit_rows": fit_rows,
        "pyod_rows": len(shared),
        "pyod_seconds_per_million": pyod_rate,
        "adp_seconds_per_million": adp_rate,
        "adp_seconds": adp_seconds,
        "speedup": pyod_rate / adp_rate,
        "first_call_seconds": first_call.seconds,
        "max_abs_diff": float(diff.max(initial=0.0)),
        "max_rel_diff": float((diff / np.maximum(np.abs(expected), 1e-300)).max(initial=0.0)),
        "exact_max_abs_diff": float(exact_diff.max(initial=0.0)),
    }


__all__ = ["FIT_ROWS", "measure_neighbors"]

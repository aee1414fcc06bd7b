"""Kernel timings of ECOD/COPOD scoring against frozen ECDFs, on one core, in-process.

Three ways to score the same new rows with a model fitted on the same sample:

- ``numpy``: :meth:`FrozenEcdfScorer.reference_dimension_scores` summed per row (the
  implementation before the compiled kernel: two ``searchsorted`` per feature);
- ``compiled``: :meth:`FrozenEcdfScorer.decision_function` (the numba kernel ADP ships);
- ``pyod``: PyOD's own ``decision_function`` (which re-fits on the sample plus the rows).

No dask here: these are the per-partition costs. ``adp bench scoring`` measures the whole
pipeline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adp.bench.measure import best_of, timed
from adp.errors import ConfigError


def _data(rows: int, features: int, sample_rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal rows with 1% shifted outliers (as ``adp bench scoring``'s lake)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    X[rng.random(rows) < 0.01] += rng.normal(0, 6, size=features)
    sample = rng.normal(size=(sample_rows, features))
    return sample, X


def measure_ecdf(
    rows: int = 2_000_000,
    features: int = 20,
    sample_rows: int = 100_000,
    method: str = "ecod",
    repeats: int = 3,
    seed: int = 0,
    numpy: bool = True,
    pyod: bool = True,
) -> dict[str, Any]:
    """Time the NumPy, compiled and PyOD scoring of ``rows`` new rows (best of ``repeats``).

    Parameters
    ----------
    rows, features : int
        Shape of the scored matrix.
    sample_rows : int
        Rows of the training sample the model is fitted on.
    method : {"ecod", "copod"}
        The detector.
    repeats : int
        Timed calls of each way; the best is reported.
    seed : int
        Seed of the synthetic data.
    numpy, pyod : bool
        Whether to time the NumPy reference and PyOD (each takes tens of seconds at the
        default size; the compiled path is always timed).

    Returns
    -------
    dict
        ``numpy_seconds``, ``compiled_seconds``, ``pyod_seconds`` (``None`` when not timed),
        ``compiled_vs_numpy`` and ``compiled_vs_pyod`` (speedups), ``first_call_seconds``
        (the first compiled call in this process: compilation, or loading numba's cache),
        ``model_build_seconds`` (fit, the same as rebuilding the index on unpickling),
        ``max_abs_difference`` (compiled against NumPy) and the parameters.

    Raises
    ------
    adp.errors.ConfigError
        For a ``method`` other than ``"ecod"`` or ``"copod"``.
    """
    from adp.detect.ecdf import FrozenEcdfScorer

    if method not in ("ecod", "copod"):
        raise ConfigError(f"method must be 'ecod' or 'copod', got {method!r}")
    sample, X = _data(rows, features, sample_rows, seed)
    with timed() as build:
        scorer = FrozenEcdfScorer(sample, method)  # type: ignore[arg-type]
    with timed() as first_call:
        scorer.decision_function(X[:10])

    compiled_seconds, compiled = best_of(lambda: scorer.decision_function(X), repeats)
    result: dict[str, Any] = {
        "rows": rows,
        "features": features,
        "sample_rows": sample_rows,
        "method": method,
        "repeats": repeats,
        "first_call_seconds": round(first_call.seconds, 4),
        "model_build_seconds": round(build.seconds, 4),
        "compiled_seconds": round(compiled_seconds, 4),
        "numpy_seconds": None,
        "pyod_seconds": None,
        "compiled_vs_numpy": None,
        "compiled_vs_pyod": None,
        "max_abs_difference": None,
    }
    if numpy:
        numpy_seconds, reference = best_of(
            lambda: scorer.reference_dimension_scores(X).sum(axis=1), repeats
        )
        result["numpy_seconds"] = round(numpy_seconds, 4)
        result["compiled_vs_numpy"] = round(numpy_seconds / compiled_seconds, 2)
        result["max_abs_difference"] = float(np.abs(compiled - reference).max(initial=0.0))
    if pyod:
        from pyod.models.copod import COPOD
        from pyod.models.ecod import ECOD

        model = (ECOD() if method == "ecod" else COPOD()).fit(sample)
        pyod_seconds, _ = best_of(lambda: model.decision_function(X), repeats)
        result["pyod_seconds"] = round(pyod_seconds, 4)
        result["compiled_vs_pyod"] = round(pyod_seconds / compiled_seconds, 2)
    return result

"""``adp bench kernels``: each compiled scoring kernel against the code it replaces.

Every kernel is timed on the same data as its reference, in this process, on one thread
(as on a dask worker with one thread), after a warm-up call that pays for numba's
compilation; each figure is the best of ``--repeats``. The reference is what ADP would
otherwise run: scikit-learn's isolation-forest traversal, PyOD's HBOS scoring, the NumPy
ECDF lookups, PyOD's own ECOD/COPOD ``decision_function`` (which re-fits on every
batch), and PyOD's KNN / LOF neighbour search (``knn``, ``lof``: fitted on 100000 rows, or
``--rows`` if fewer; BLAS pinned to one thread; reported per million rows). A kernel is ADP's
default only where this benchmark shows it faster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
import numpy as np

from adp.bench.measure import best_of
from adp.errors import BenchmarkError


def measure_hbos(
    rows: int = 2_000_000, features: int = 20, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """PyOD's ``HBOS.decision_function`` against :class:`~adp.detect.hbos.HbosScorer`.

    Returns
    -------
    dict
        ``pyod_seconds``, ``compiled_seconds``, ``speedup`` and ``max_abs_diff``.
    """
    from pyod.models.hbos import HBOS

    from adp.detect.hbos import HbosScorer

    rng = np.random.default_rng(seed)
    model = HBOS().fit(rng.standard_normal((100_000, features)))
    X = rng.standard_normal((rows, features)) * 1.5
    scorer = HbosScorer(model)
    model.decision_function(X[:1000])
    scorer.decision_function(X[:1000])
    pyod_seconds, expected = best_of(lambda: model.decision_function(X), repeats)
    compiled_seconds, got = best_of(lambda: scorer.decision_function(X), repeats)
    diff = float(np.max(np.abs(got - expected)))
    return {
        "pyod_seconds": pyod_seconds,
        "compiled_seconds": compiled_seconds,
        "speedup": pyod_seconds / compiled_seconds,
        "max_abs_diff": diff,
    }


def measure_threshold(
    rows: int = 2_000_000, partitions: int = 16, repeats: int = 3, seed: int = 0
) -> dict[str, Any]:
    """The exact threshold's three per-partition passes, in NumPy, against a full sort.

    They are vectorised NumPy already (min/max, a bincount histogram, ``np.unique`` of one
    bin), so they are not compiled; this reports their cost per million scores next to
    ``np.partition`` of all scores in one process, which the passes avoid.

    Raises
    ------
    adp.errors.BenchmarkError
        When the passes do not find the threshold ``np.partition`` finds.
    """
    import pandas as pd

    from adp.detect import threshold as t

    rng = np.random.default_rng(seed)
    parts = [pd.Series(p) for p in np.array_split(rng.standard_normal(rows), partitions)]
    k = int(np.ceil(0.01 * rows))

    def passes() -> float:
        stats = t._merge_stats([t._stats(p) for p in parts])
        _, lo, hi = stats
        hist = t._sum_arrays([t._histogram(p, lo, hi, 4096) for p in parts])
        window = t._locate(stats, hist, 0.01)
        found = t._merge_candidates([t._candidates(p, window, lo, hi, 4096) for p in parts])
        return t._pick(found, window)

    everything = np.concatenate([p.to_numpy() for p in parts])
    expected = float(np.partition(everything, rows - k)[rows - k])
    got = passes()
    if got != expected:
        raise BenchmarkError(
            f"the threshold passes over {rows} scores in {partitions} partitions found "
            f"{got!r}, np.partition {expected!r}: the passes are wrong, their timing is moot"
        )
    passes_seconds, _ = best_of(passes, repeats)
    partition_seconds, _ = best_of(lambda: np.partition(everything, rows - k), repeats)
    return {
        "passes_seconds": passes_seconds,
        "np_partition_seconds": partition_seconds,
        "passes_seconds_per_million": passes_seconds / rows * 1e6,
    }


def measure_ecod(**kwargs: Any) -> dict[str, Any]:
    """ECOD against frozen ECDFs: compiled, the NumPy path, and PyOD's re-fitting scorer."""
    return _ecdf("ecod", **kwargs)


def measure_copod(**kwargs: Any) -> dict[str, Any]:
    """COPOD, as :func:`measure_ecod`."""
    return _ecdf("copod", **kwargs)


def _ecdf(method: str, **kwargs: Any) -> dict[str, Any]:
    from adp.bench.kernels_ecdf import measure_ecdf

    result = measure_ecdf(method=method, **kwargs)
    # The same names as the other kernels: the reference replaced is PyOD's scorer.
    result["speedup"] = result["compiled_vs_pyod"]
    result["max_abs_diff"] = result["max_abs_difference"]
    return result


def measure_forest(**kwargs: Any) -> dict[str, Any]:
    """scikit-learn's isolation-forest traversal against the compiled one."""
    from adp.bench.kernels_forest import measure_forest as measure

    return measure(**kwargs)


def measure_knn(**kwargs: Any) -> dict[str, Any]:
    """PyOD's ``KNN`` scoring against ADP's exact blocked neighbour search (BLAS pinned to
    one thread; PyOD timed on at most 20000 of the rows, both reported per million)."""
    from adp.bench.kernels_neighbors import measure_neighbors

    return measure_neighbors("knn", **kwargs)


def measure_lof(**kwargs: Any) -> dict[str, Any]:
    """PyOD's ``LOF`` scoring against ADP's exact blocked neighbour search, as ``knn``."""
    from adp.bench.kernels_neighbors import measure_neighbors

    return measure_neighbors("lof", **kwargs)


def measure_ocsvm(**kwargs: Any) -> dict[str, Any]:
    """PyOD's exact ``OCSVM`` against ``ocsvm_nystroem``: cost per million rows, and ROC-AUC
    of both on the ODDS sets (minutes: the exact fits are quadratic; run on request only)."""
    from adp.bench.kernels_ocsvm import measure_ocsvm_nystroem

    return measure_ocsvm_nystroem(**kwargs)


KERNELS: dict[str, Callable[..., dict[str, Any]]] = {
    "isolation_forest": measure_forest,
    "ecod": measure_ecod,
    "copod": measure_copod,
    "hbos": measure_hbos,
    "knn": measure_knn,
    "lof": measure_lof,
}
#: Measured only when named with ``--kernel``.
ON_REQUEST: dict[str, Callable[..., dict[str, Any]]] = {"ocsvm_nystroem": measure_ocsvm}


@click.command("kernels")
@click.option("--rows", default=2_000_000, show_default=True)
@click.option("--features", default=20, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option(
    "--kernel",
    "names",
    multiple=True,
    type=click.Choice([*sorted(KERNELS), *sorted(ON_REQUEST), "threshold"]),
    help="Measure only these (repeatable); default all but ocsvm_nystroem.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def kernels(rows: int, features: int, repeats: int, names: tuple[str, ...], as_json: bool) -> None:
    """Compiled scoring kernels against what they replace, on one thread."""
    results: dict[str, Any] = {"rows": rows, "features": features}
    for name in names or (*KERNELS, "threshold"):
        if name == "threshold":
            results[name] = measure_threshold(rows=rows, repeats=repeats)
        else:
            measure = KERNELS.get(name) or ON_REQUEST[name]
            results[name] = measure(rows=rows, features=features, repeats=repeats)
    click.echo(json.dumps(results, indent=None if as_json else 2))

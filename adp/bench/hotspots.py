"""``adp bench profile``: where each detector's scoring time goes, by function.

Each detector is fitted on a standard-normal sample and its scorer (what ADP ships to the
workers) scores one partition-sized batch under :mod:`cProfile`, on one thread, after an
untimed warm-up call (imports, numba compilation). The report gives the seconds per million
rows and the functions with the most self time: a compiled kernel or a NumPy/BLAS call at the
top means the interpreter is not the bottleneck; Python frames at the top mean it is.
"""

from __future__ import annotations

import cProfile
import json
import pstats
from typing import Any

import click
import numpy as np

from adp.bench.measure import best_of

CORE = ("isolation_forest", "ecod", "copod", "hbos", "lof", "knn", "one_class_svm", "pca")


def _label(func: tuple[str, int, str]) -> str:
    """``path:line(name)`` with the path from its package on, or a builtin's name."""
    filename, line, name = func
    if filename == "~":  # a builtin or C function
        return name
    if "site-packages/" in filename:
        filename = filename.split("site-packages/", 1)[1]
    elif "/adp/" in filename:
        filename = "adp/" + filename.rsplit("/adp/", 1)[1]
    return f"{filename}:{line}({name})"


def profile_detector(
    name: str, rows: int = 125_000, features: int = 20, fit_rows: int = 100_000, top: int = 5
) -> dict[str, Any]:
    """Profile one detector's scorer on ``rows`` x ``features`` standard-normal rows.

    Returns
    -------
    dict
        ``seconds_per_million_rows`` (unprofiled, best of 2), ``scorer`` (its class) and
        ``top``: the ``top`` functions by self time with their share of the profiled time.
    """
    from adp.detect import fitting
    from adp.detect.registry import detector_info

    rng = np.random.default_rng(0)
    info = detector_info(name)
    result = fitting.fit_matrix(info, {}, 0.1, rng.standard_normal((fit_rows, features)))
    scorer = result.scorer
    X = rng.standard_normal((rows, features))
    scorer.decision_function(X[:1000])  # warm-up: imports and compilation
    best, _ = best_of(lambda: scorer.decision_function(X), 2)
    profiler = cProfile.Profile()
    profiler.runcall(scorer.decision_function, X)
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1.0
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "detector": name,
        "scorer": type(scorer).__name__,
        "seconds_per_million_rows": best / rows * 1e6,
        "top": [
            {"function": _label(func), "self_share": round(v[2] / total, 3)} for func, v in ranked
        ],
    }


@click.command("profile")
@click.option(
    "--detector",
    "names",
    multiple=True,
    help="Detector to profile (repeatable); default the core eight.",
)
@click.option("--rows", default=125_000, show_default=True, help="Rows scored (one partition).")
@click.option("--features", default=20, show_default=True)
@click.option("--fit-rows", default=20_000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def profile(names: tuple[str, ...], rows: int, features: int, fit_rows: int, as_json: bool) -> None:
    """Profile each detector's scoring of one partition, function by function."""
    report = [profile_detector(n, rows, features, fit_rows) for n in names or CORE]
    if as_json:
        click.echo(json.dumps(report))
        return
    for entry in report:
        click.echo(
            f"{entry['detector']} ({entry['scorer']}): "
            f"{entry['seconds_per_million_rows']:.2f} s per million rows"
        )
        for item in entry["top"]:
            click.echo(f"  {item['self_share']:6.1%}  {item['function']}")

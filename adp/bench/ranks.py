"""``adp bench ranks``: an ensemble's rank normalisation through the ECDF bucket index
against ``searchsorted``, in one process and one run.

A rank-normalised ensemble of ``--members`` (default ECOD, HBOS, isolation forest, COPOD)
is fitted on ``--fit-rows`` x ``--features``; it then scores ``--rows`` rows. Timed best of
``--repeats``: the normalisation of every member's raw scores alone, and the ensemble's
whole ``decision_function``, each with the index (:class:`adp.detect.rank_index.RankIndex`,
ADP's path) and with ``searchsorted`` into the sorted training scores (the previous path).
The two must give equal scores; the run fails otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from adp.bench.measure import best_of
from adp.errors import BenchmarkError


def _searchsorted_ranks(sorted_scores: np.ndarray, raw: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_scores, raw, side="right") / sorted_scores.size


def bench_ranks(
    members: tuple[str, ...] = ("ecod", "hbos", "iforest", "copod"),
    fit_rows: int = 100_000,
    features: int = 10,
    rows: int = 200_000,
    repeats: int = 3,
) -> dict[str, Any]:
    """Seconds of rank normalisation and of the ensemble's scoring, index vs searchsorted.

    Raises
    ------
    adp.errors.BenchmarkError
        When the two ways give different scores.
    """
    from adp.detect import fitting
    from adp.detect.combine import EnsembleScorer, TrainingStats
    from adp.detect.registry import detector_info

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(fit_rows, features)), rng.normal(size=(rows, features))
    fits = [
        fitting.fit_matrix(detector_info(m), {}, 0.1, X, with_stats=True, seed=0) for m in members
    ]
    stats: list[TrainingStats] = [f.stats for f in fits if f.stats is not None]
    scorer = EnsembleScorer([f.scorer for f in fits], stats, "average", "rank")
    raw = [np.asarray(f.scorer.decision_function(Y), dtype=np.float64) for f in fits]

    def index_ranks() -> list[np.ndarray]:
        return [s.normalize(r, "rank") for s, r in zip(stats, raw, strict=True)]

    def searchsorted_ranks() -> list[np.ndarray]:
        return [_searchsorted_ranks(s.sorted_scores, r) for s, r in zip(stats, raw, strict=True)]

    def searchsorted_ensemble() -> np.ndarray:
        columns = [
            _searchsorted_ranks(s.sorted_scores, np.asarray(m.decision_function(Y)))
            for m, s in zip(scorer.scorers, stats, strict=True)
        ]
        return np.column_stack(columns).mean(axis=1)

    index_ranks()  # warm-up: compilation, the indexes
    result: dict[str, Any] = {
        "members": list(members),
        "fit_rows": fit_rows,
        "features": features,
        "rows": rows,
        "repeats": repeats,
    }
    index_norm, ranks = best_of(index_ranks, repeats)
    search_norm, expected = best_of(searchsorted_ranks, repeats)
    index_total, combined = best_of(lambda: scorer.decision_function(Y), repeats)
    search_total, expected_combined = best_of(searchsorted_ensemble, repeats)
    equal = all(np.array_equal(a, b) for a, b in zip(ranks, expected, strict=True))
    if not (equal and np.array_equal(combined, expected_combined)):
        raise BenchmarkError("the bucket index and searchsorted gave different ranks")
    result["normalise_seconds"] = {"index": index_norm, "searchsorted": search_norm}
    result["ensemble_seconds"] = {"index": index_total, "searchsorted": search_total}
    return result


@click.command("ranks")
@click.option("--members", default="ecod,hbos,iforest,copod", show_default=True)
@click.option("--fit-rows", default=100_000, show_default=True)
@click.option("--features", default=10, show_default=True)
@click.option("--rows", default=200_000, show_default=True)
@click.option("--repeats", default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def ranks(
    members: str, fit_rows: int, features: int, rows: int, repeats: int, as_json: bool
) -> None:
    """Rank normalisation of an ensemble: ECDF bucket index against searchsorted."""
    names = tuple(m.strip() for m in members.split(",") if m.strip())
    result = bench_ranks(names, fit_rows, features, rows, repeats)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"{len(names)}-member rank ensemble ({', '.join(names)}), fitted on {fit_rows} x "
        f"{features}, scoring {rows} rows, best of {repeats}; equal scores"
    )
    click.echo("")
    click.echo("| seconds | searchsorted | bucket index |")
    click.echo("|---|---:|---:|")
    for label, key in (
        ("normalise members", "normalise_seconds"),
        ("whole ensemble", "ensemble_seconds"),
    ):
        click.echo(f"| {label} | {result[key]['searchsorted']:.3f} | {result[key]['index']:.3f} |")

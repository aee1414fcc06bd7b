"""Search benchmarks: trial throughput on the cluster, and unsupervised selection quality.

``adp bench search``
    :func:`bench_search` runs the same labelled, cross-validated trials twice in one run:
    as :func:`adp.search` does on the cluster (one task per trial), and one after another in
    this process (BLAS limited to one thread, as the workers' nannies set it), and reports
    the speed-up. Both see the same sample and folds, so their scores must agree.
``adp bench criteria``
    :func:`selection_table` asks, on the shared ODDS datasets: how often does the
    unsupervised pick (:mod:`adp.tuning.selection`) beat the median candidate, and a default
    isolation forest, judged by the true labels the pick never saw?
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from distributed import Client

from adp.bench.measure import cluster, timed
from adp.tuning.space import Candidate, draw_candidates
from adp.tuning.trials import SearchData, run_trial

BENCH_SPACE: dict[str, Any] = {
    "isolation_forest": {"n_estimators": {"randint": [200, 260]}, "max_samples": [256]},
}
"""Trials of similar cost, so the comparison measures overhead, not imbalance."""


@contextmanager
def _connected(address: str | None) -> Iterator[Client | None]:
    if address is None:
        yield None
        return
    from adp.cluster import connect

    with connect(address) as client:
        yield client


def _synthetic(rows: int, features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    y = (rng.random(rows) < 0.05).astype(np.int64)
    X[y == 1] += rng.normal(2.5, 1.0, size=(int(y.sum()), features))
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(features)])
    frame["label"] = y
    return frame


def _warm(_: Any = None) -> bool:
    import pyod.models.iforest  # noqa: F401
    import sklearn.metrics  # noqa: F401

    return True


def _run_candidates(
    frame: pd.DataFrame, candidates: Sequence[Candidate], cv: int, random_state: int
) -> dict[int, float]:
    """Run ``candidates`` one after another in this process, BLAS on one thread (as the
    nanny sets it on the workers); the sample is every row, in order, as in the search."""
    from threadpoolctl import threadpool_limits

    features = [c for c in frame.columns if c != "label"]
    data = SearchData(frame[features].to_numpy(np.float64), frame["label"].to_numpy(), features)
    cv_seed = int(np.random.SeedSequence(random_state).generate_state(1)[0] % (2**31 - 1))
    with threadpool_limits(1):
        return {c.trial: run_trial(data, c, "roc_auc", cv, cv_seed, 0.1).score for c in candidates}


def _in_plain_process(
    rows: int, features: int, seed: int, candidates: Sequence[Candidate], cv: int
) -> dict[int, float]:
    return _run_candidates(_synthetic(rows, features, seed), candidates, cv, seed)


def _warm_process(_: int) -> bool:
    _warm()
    _run_candidates(_synthetic(100, 2, 0), [], 2, 0)
    time.sleep(0.5)  # hold this process so that the next warm-up lands on another one
    return True


def _plain_processes(
    rows: int, features: int, seed: int, candidates: list[Candidate], cv: int, n: int
) -> float:
    """Seconds for ``n`` plain processes (no Dask) to run ``candidates`` dealt round-robin:
    the machine's own parallel ceiling, measured beside the cluster."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=n, mp_context=context) as pool:
        list(pool.map(_warm_process, range(n)))
        with timed() as timer:
            shares = [
                pool.submit(_in_plain_process, rows, features, seed, candidates[i::n], cv)
                for i in range(n)
            ]
            for share in shares:
                share.result()
        return timer.seconds


def bench_search(
    n_trials: int = 16,
    client: Client | None = None,
    rows: int = 20_000,
    features: int = 10,
    cv: int = 3,
    random_state: int = 0,
    engines: Sequence[str] = ("futures", "dask-ml"),
    space: Any = None,
    repeats: int = 1,
    plain_processes: bool = True,
) -> dict[str, Any]:
    """Time ``n_trials`` trials on the cluster against the same trials run sequentially.

    Parameters
    ----------
    n_trials : int
        Candidates (isolation forests of similar cost, see :data:`BENCH_SPACE`).
    client : distributed.Client, optional
        Default: a new LocalCluster of 2 worker processes, 1 thread each.
    rows, features : int
        Size of the synthetic labelled data (5% anomalies); the search samples every row.
    cv : int
        Folds per trial.
    random_state : int
    engines : sequence of {"futures", "dask-ml"}
        Engines to time; the first gives ``speedup``.
    space : optional
        The search space; default :data:`BENCH_SPACE`.
    repeats : int
        Rounds of (each engine, then sequential), interleaved; the fastest of each counts,
        which damps the noise of other load on the machine.
    plain_processes : bool
        Also time the same trials in as many plain processes as there are workers (no
        Dask): the ceiling this machine allows right now. On a shared machine, read the
        cluster's speed-up against ``plain_speedup``.

    Returns
    -------
    dict
        ``parallel_seconds`` and ``speedup`` (first engine), ``sequential_seconds``,
        ``<engine>_seconds`` and ``<engine>_speedup`` per engine, ``workers``,
        ``scores_match`` (the cluster's scores equal the sequential ones) and the setup.
        Cluster times are whole :func:`adp.search` calls: sampling, placing the sample on
        the workers, the trials and collecting the leaderboard.
    """
    import dask.dataframe as dd

    import adp

    frame = _synthetic(rows, features, random_state)
    ddf = dd.from_pandas(frame, npartitions=4)
    timings: dict[str, list[float]] = {engine: [] for engine in engines}
    task_seconds: dict[str, list[float]] = {engine: [] for engine in engines}
    sequential: list[float] = []
    plain: list[float] = []
    with cluster(client, install_plugins=False) as c:
        workers = len(c.scheduler_info(n_workers=-1)["workers"])
        c.run(_warm)
        _warm()
        for _ in range(max(1, repeats)):
            boards = {}
            for engine in engines:
                with timed() as timer:
                    result = adp.search(
                        ddf,
                        BENCH_SPACE if space is None else space,
                        label="label",
                        max_trials=n_trials,
                        cv=cv,
                        sample_rows=rows,
                        random_state=random_state,
                        engine=engine,  # type: ignore[arg-type]
                        refit=False,
                        client=c,
                    )
                timings[engine].append(timer.seconds)
                boards[engine] = result.leaderboard
                task_seconds[engine].append(float(result.leaderboard["trial_seconds"].sum()))
            candidates = [
                Candidate(int(row.trial), row.detector, dict(row.params))
                for row in boards[engines[0]].itertuples()
            ]
            with timed() as timer:
                scores = _run_candidates(frame, candidates, cv, random_state)
            sequential.append(timer.seconds)
            if plain_processes:
                plain.append(
                    _plain_processes(rows, features, random_state, candidates, cv, workers)
                )

    first = boards[engines[0]].set_index("trial")["score"]
    out: dict[str, Any] = {
        "trials": len(first),
        "rows": rows,
        "features": features,
        "cv": cv,
        "workers": workers,
        "repeats": max(1, repeats),
        "sequential_seconds": min(sequential),
        "scores_match": bool(
            np.allclose([scores[t] for t in first.index], first.to_numpy(), atol=1e-9)
        ),
    }
    for engine, rounds in timings.items():
        out[f"{engine}_seconds"] = min(rounds)
        out[f"{engine}_speedup"] = out["sequential_seconds"] / min(rounds)
        # Summed time inside the trials on the workers: compared with sequential_seconds it
        # tells slower trials (CPU contention) from scheduling overhead.
        out[f"{engine}_trial_seconds"] = min(task_seconds[engine])
    if plain:
        out["plain_seconds"] = min(plain)
        out["plain_speedup"] = out["sequential_seconds"] / min(plain)
    out["parallel_seconds"] = out[f"{engines[0]}_seconds"]
    out["speedup"] = out[f"{engines[0]}_speedup"]
    return out


def _odds_datasets(odds_dir: Path, datasets: Sequence[str] | None) -> list[str]:
    manifest = pd.read_csv(odds_dir / "MANIFEST.csv")
    names = list(manifest["dataset"])
    if datasets:
        unknown = sorted(set(datasets) - set(names))
        if unknown:
            raise click.BadParameter(f"unknown datasets {unknown}; available: {names}")
        names = [n for n in names if n in datasets]
    return names


def _evaluate(
    client: Client,
    path: Path,
    space: Any,
    max_trials: int,
    sample_rows: int,
    seed: int,
    criterion_name: str,
) -> dict[str, Any]:
    import dask.dataframe as dd
    from sklearn.metrics import roc_auc_score

    from adp.tuning.engines import place_sample, run_futures
    from adp.tuning.selection import criterion

    ddf = dd.read_parquet(str(path))
    features = [c for c in ddf.columns if c != "label"]
    candidates = [
        c for c in draw_candidates(space, "random", max_trials, seed) if not c.skip_reason
    ]
    reference = Candidate(len(candidates), "isolation_forest", {"random_state": seed})
    data, size, _ = place_sample(client, ddf, features, "label", sample_rows, seed)
    try:
        # criterion=None keeps each trial's scores; the labels never reach the selection.
        outcomes, _ = run_futures(
            client,
            data,
            [*candidates, reference],
            metric=criterion_name,
            criterion=None,
            cv=None,
            cv_seed=seed,
            contamination=0.1,
            deadline=None,
        )
        y = client.submit(getattr, data, "y", pure=False).result()
    finally:
        data.release()
    ok = [o for o in outcomes[:-1] if o.status == "ok" and o.scores is not None]
    judged = criterion(criterion_name)(np.stack([o.scores for o in ok]))  # type: ignore[misc]
    aucs = np.array([roc_auc_score(y, o.scores) for o in ok])
    pick = int(np.argmax(judged))
    ref = outcomes[-1]
    iforest = roc_auc_score(y, ref.scores) if ref.scores is not None else float("nan")
    return {
        "rows": size,
        "candidates": len(ok),
        "failed": len(candidates) - len(ok),
        "pick": f"{ok[pick].detector} {json.dumps(ok[pick].params)}",
        "pick_auc": float(aucs[pick]),
        "median_auc": float(np.median(aucs)),
        "iforest_auc": float(iforest),
        "best_auc": float(aucs.max()),
        "pick_percentile": float((aucs < aucs[pick]).mean() * 100),
    }


def selection_table(
    odds_dir: str | Path,
    datasets: Sequence[str] | None = None,
    space: Any = None,
    max_trials: int = 21,
    repeats: int = 3,
    sample_rows: int = 10_000,
    criterion_name: str = "model_centrality",
    client: Client | None = None,
) -> pd.DataFrame:
    """Judge the unsupervised pick by the true labels on the ODDS datasets.

    For each dataset and seed: draw ``max_trials`` candidates from ``space`` (default: the
    default search space), fit each on a sample of ``sample_rows`` rows, pick one by
    ``criterion_name`` without labels, and compare the pick's true ROC-AUC with the median
    candidate's and with an isolation forest at default hyperparameters. Every model is
    judged on the rows it was fitted on (the transductive protocol of the ODDS benchmarks).

    Returns
    -------
    pandas.DataFrame
        One row per dataset: mean ``pick_auc``, ``median_auc``, ``iforest_auc``,
        ``best_auc``, ``pick_percentile`` (share of candidates the pick beats, %) and
        ``beats_median`` / ``beats_iforest`` as "wins/repeats"; a last ``all`` row sums the
        wins.
    """
    odds_dir = Path(odds_dir)
    rows = []
    with cluster(client, install_plugins=False) as c:
        for name in _odds_datasets(odds_dir, datasets):
            runs = [
                _evaluate(
                    c,
                    odds_dir / f"{name}.parquet",
                    space,
                    max_trials,
                    sample_rows,
                    seed,
                    criterion_name,
                )
                for seed in range(repeats)
            ]
            frame = pd.DataFrame(runs)
            rows.append(
                {
                    "dataset": name,
                    "pick_auc": frame["pick_auc"].mean(),
                    "median_auc": frame["median_auc"].mean(),
                    "iforest_auc": frame["iforest_auc"].mean(),
                    "best_auc": frame["best_auc"].mean(),
                    "pick_percentile": frame["pick_percentile"].mean(),
                    "wins_median": int((frame["pick_auc"] > frame["median_auc"]).sum()),
                    "wins_iforest": int((frame["pick_auc"] > frame["iforest_auc"]).sum()),
                    "repeats": len(frame),
                    "picks": "; ".join(sorted(set(frame["pick"].str.split(" ").str[0]))),
                }
            )
    table = pd.DataFrame(rows)
    total = {
        "dataset": "all",
        "pick_auc": table["pick_auc"].mean(),
        "median_auc": table["median_auc"].mean(),
        "iforest_auc": table["iforest_auc"].mean(),
        "best_auc": table["best_auc"].mean(),
        "pick_percentile": table["pick_percentile"].mean(),
        "wins_median": int(table["wins_median"].sum()),
        "wins_iforest": int(table["wins_iforest"].sum()),
        "repeats": int(table["repeats"].sum()),
        "picks": "",
    }
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["beats_median"] = table["wins_median"].astype(str) + "/" + table["repeats"].astype(str)
    table["beats_iforest"] = table["wins_iforest"].astype(str) + "/" + table["repeats"].astype(str)
    return table


@click.command("search")
@click.option("--trials", "n_trials", default=16, show_default=True, help="Trials to run.")
@click.option("--rows", default=20_000, show_default=True, help="Rows of synthetic data.")
@click.option("--repeat", "repeats", default=1, show_default=True, help="Rounds; best counts.")
@click.option("--scheduler", metavar="ADDRESS", help="Use this cluster, not a new one.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def search_command(
    n_trials: int, rows: int, repeats: int, scheduler: str | None, as_json: bool
) -> None:
    """Search speed: N trials on 2 workers against the same trials run sequentially."""
    with _connected(scheduler) as client:
        result = bench_search(n_trials=n_trials, rows=rows, repeats=repeats, client=client)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(
        f"{result['trials']} trials, {result['rows']} rows x {result['features']} features, "
        f"cv={result['cv']}, {result['workers']} workers"
    )
    click.echo(f"sequential, one process:  {result['sequential_seconds']:.2f} s")
    for engine in ("futures", "dask-ml"):
        if f"{engine}_seconds" in result:
            click.echo(
                f"{engine + ' on the cluster:':<25} {result[f'{engine}_seconds']:.2f} s "
                f"({result[f'{engine}_speedup']:.2f}x)"
            )
    if "plain_seconds" in result:
        click.echo(
            f"{'plain processes (ceiling):':<25} {result['plain_seconds']:.2f} s "
            f"({result['plain_speedup']:.2f}x)"
        )
    click.echo(f"scores match: {result['scores_match']}")


@click.command("selection")
@click.option(
    "--odds",
    "odds_dir",
    default="../shared/data/odds",
    show_default=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Folder of the ODDS Parquet files and MANIFEST.csv.",
)
@click.option("--dataset", "datasets", multiple=True, help="Only these datasets (repeatable).")
@click.option("--trials", "max_trials", default=21, show_default=True)
@click.option("--repeats", default=3, show_default=True, help="Seeds per dataset.")
@click.option("--sample-rows", default=10_000, show_default=True)
@click.option(
    "--criterion",
    "criterion_name",
    default="model_centrality",
    show_default=True,
    type=click.Choice(["model_centrality", "top_consensus"]),
)
@click.option("--scheduler", metavar="ADDRESS", help="Use this cluster, not a new one.")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON records.")
def selection_command(
    odds_dir: Path,
    datasets: tuple[str, ...],
    max_trials: int,
    repeats: int,
    sample_rows: int,
    criterion_name: str,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Unsupervised selection on ODDS: does the pick beat the median candidate and iForest?"""
    with _connected(scheduler) as client:
        table = selection_table(
            odds_dir,
            datasets or None,
            None,
            max_trials,
            repeats,
            sample_rows,
            criterion_name,
            client=client,
        )
    if as_json:
        click.echo(table.to_json(orient="records", indent=2))
        return
    columns = [
        "dataset",
        "pick_auc",
        "median_auc",
        "iforest_auc",
        "best_auc",
        "pick_percentile",
        "beats_median",
        "beats_iforest",
        "picks",
    ]
    click.echo(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


# The names ``adp bench`` looks up (adp/bench/cli.py).
search = search_command
selection = selection_command

__all__ = [
    "bench_search",
    "search",
    "search_command",
    "selection",
    "selection_command",
    "selection_table",
]

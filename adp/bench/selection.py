"""``adp bench selection``: does label-free selection beat the default isolation forest?

Leave-one-dataset-out over the performance table's datasets: for each dataset, a
:class:`~adp.tuning.selector.Selector` is trained on the *other* datasets' runs only, then
chooses for this one from its meta-features (computed afresh on the cluster, without the
label) at each seed; the choice is judged by the table's ROC-AUC and average precision of
that candidate at that seed, next to the default isolation forest's, the best candidate's
(an oracle) and the median candidate's. The time selection costs is measured next to one
default fit (:meth:`adp.Detector.fit`, the same data, the same cluster).

``--build`` first (re)builds the performance table over ``--odds`` (every ``*.parquet``)
and any ``--data`` file (:func:`adp.tuning.tablebuild.build_table`), and writes it (by
default where ADP ships it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from distributed import Client

from adp.bench.measure import cluster, timed
from adp.clitools import fail_cleanly
from adp.errors import DataError
from adp.tuning.perftable import DEFAULT_ID, PerformanceTable, load_table, sha256_file
from adp.tuning.selecting import select_detector
from adp.tuning.selector import Selector
from adp.tuning.tablebuild import build_table, open_labelled

TIE = 0.001
#: The per-run figures averaged per dataset, in the order the table prints them.
MEASURES = (
    "pick_auc",
    "default_auc",
    "best_auc",
    "median_auc",
    "pick_ap",
    "default_ap",
    "best_ap",
    "median_ap",
    "unchecked_auc",
    "selection_seconds",
    "default_fit_seconds",
)
"""ROC-AUC differences up to this count as ties."""


def _paths(table: PerformanceTable, overrides: dict[str, Path]) -> dict[str, Path]:
    """Each dataset's file, checked against the SHA-256 the table recorded."""
    recorded = {d["name"]: d for d in table.provenance.get("datasets", [])}
    out = {}
    for name in table.datasets:
        path = overrides.get(name) or Path(recorded.get(name, {}).get("path", ""))
        if not path or not path.is_file():
            raise DataError(
                f"dataset {name!r} of the selection table is not at {str(path) or '?'}: "
                "give its folder with --odds or the file with --data"
            )
        sha = recorded.get(name, {}).get("sha256")
        if sha and sha256_file(path) != sha:
            raise DataError(f"{path} is not the file the table was built from (SHA-256 differs)")
        out[name] = path
    return out


def _default_fit_seconds(client: Client, ddf: Any, features: list[str], seed: int) -> float:
    from adp.detect.detector import create_detector

    detector = create_detector("isolation_forest", random_state=seed)
    with client.as_current(), timed() as timer:
        detector.fit(ddf, features=features)
    return timer.seconds


def _warm(client: Client) -> None:
    """Imports and numba compilation on the workers, so that the first timed selection
    does not pay for them."""
    import dask.dataframe as dd

    from adp.tuning.metafeatures import compute_metafeatures

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    ddf = dd.from_pandas(frame, npartitions=2)
    for _ in range(2):  # two tasks at a time: both workers
        with client.as_current():
            compute_metafeatures(ddf, random_state=0)
        _default_fit_seconds(client, ddf, ["a", "b", "c"], 0)


def leave_one_out(
    table: PerformanceTable,
    client: Client,
    paths: dict[str, Path] | None = None,
    *,
    check_criteria: bool = True,
    selector_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per (dataset, seed): the pick, its figures and the reference figures.

    Parameters
    ----------
    table : PerformanceTable
        With at least three datasets (each left out in turn, the selector needs two).
    client : distributed.Client
    paths : dict, optional
        Dataset name -> Parquet file; default the paths the table recorded.
    check_criteria : bool
        Passed to :func:`~adp.tuning.selecting.select_detector`.
    selector_options : dict, optional
        Keyword arguments of :class:`~adp.tuning.selector.Selector`.
    """
    files = _paths(table, paths or {})
    _warm(client)
    candidates = table.candidates
    default = candidates.index(DEFAULT_ID)
    rows = []
    for name in table.datasets:
        selector = Selector(table.without(name), **(selector_options or {}))
        ddf, features = open_labelled(files[name])
        ddf = ddf[features]
        for run in (r for r in table.runs if r.dataset == name):
            selection = select_detector(
                ddf,
                features,
                selector,
                run.seed,
                check_criteria=check_criteria,
                client=client,
            )
            pick = candidates.index(selection.choice)
            if not np.isfinite(run.roc_auc[pick]):  # it failed here: a fit would fall back
                pick = default
            unchecked = candidates.index(selection.unchecked)
            auc = np.array(run.roc_auc)
            ap = np.array(run.average_precision)
            rows.append(
                {
                    "dataset": name,
                    "seed": run.seed,
                    "pick": selection.choice,
                    "fallback": selection.fallback,
                    "reason": selection.reason,
                    "confidence": selection.confidence,
                    "pick_auc": auc[pick],
                    "pick_ap": ap[pick],
                    "unchecked_auc": auc[unchecked],
                    "default_auc": auc[default],
                    "default_ap": ap[default],
                    "best_auc": np.nanmax(auc),
                    "best_ap": np.nanmax(ap),
                    "median_auc": np.nanmedian(auc),
                    "median_ap": np.nanmedian(ap),
                    "selection_seconds": selection.seconds["total"],
                    "default_fit_seconds": _default_fit_seconds(client, ddf, features, run.seed),
                }
            )
    return pd.DataFrame(rows)


def per_dataset(runs: pd.DataFrame) -> pd.DataFrame:
    """Means over seeds per dataset, the picks, and a last ``mean`` row."""
    numeric = list(MEASURES)
    grouped = runs.groupby("dataset", sort=False)
    table = grouped[numeric].mean()
    table["picks"] = grouped["pick"].agg(lambda s: "; ".join(sorted(set(s))))
    table["fallbacks"] = (
        grouped["fallback"].sum().astype(int).astype(str)
        + "/"
        + grouped["fallback"].size().astype(str)
    )
    table = table.reset_index()
    mean = {c: table[c].mean() for c in numeric}
    table = pd.concat(
        [table, pd.DataFrame([{"dataset": "mean", **mean, "picks": "", "fallbacks": ""}])],
        ignore_index=True,
    )
    table["delta_auc"] = table["pick_auc"] - table["default_auc"]
    table["cost_ratio"] = table["selection_seconds"] / table["default_fit_seconds"]
    return table


def verdict(table: pd.DataFrame, tie: float = TIE) -> dict[str, Any]:
    """Against the target: beats or ties the default on >= 7 of 9 datasets and on the mean,
    never more than 0.02 below it."""
    per = table[table["dataset"] != "mean"]
    delta = per["delta_auc"].to_numpy()
    mean_delta = float(table[table["dataset"] == "mean"]["delta_auc"].iloc[0])
    wins = int((delta > tie).sum())
    ties = int((np.abs(delta) <= tie).sum())
    losses = int((delta < -tie).sum())
    worst = float(delta.min())
    need = math.ceil(len(per) * 7 / 9)
    return {
        "datasets": len(per),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "mean_delta_auc": mean_delta,
        "worst_delta_auc": worst,
        "target_met": bool(wins + ties >= need and mean_delta >= -tie and worst >= -0.02),
    }


def _shipped_table_path() -> Path:
    return Path(str(resources.files("adp.tuning").joinpath("data/selection_table.json")))


def run_benchmark(
    odds_dir: Path | None,
    data: Sequence[Path],
    build: bool,
    table_path: Path | None,
    out: Path | None,
    repeats: int,
    sample_rows: int,
    check_criteria: bool,
    client: Client | None,
    echo: Any = click.echo,
) -> tuple[pd.DataFrame, dict[str, Any], PerformanceTable]:
    """Build the table if asked, then run the leave-one-dataset-out benchmark."""
    files = sorted(odds_dir.glob("*.parquet")) if odds_dir is not None else []
    files += [Path(p) for p in data]
    overrides = {p.stem: p for p in files}
    with cluster(client, install_plugins=False) as c:
        if build:
            if not files:
                raise DataError("--build needs labelled Parquet files: give --odds or --data")
            table = build_table(
                files, c, seeds=range(repeats), sample_rows=sample_rows, progress=echo
            )
            target = out or _shipped_table_path()
            table.save(target)
            echo(f"wrote {target} ({len(table.datasets)} datasets, {len(table.runs)} runs)")
        else:
            table = load_table(table_path)
        runs = leave_one_out(table, c, overrides, check_criteria=check_criteria)
    summary = per_dataset(runs)
    return summary, verdict(summary), table


@click.command("selection")
@click.option(
    "--odds",
    "odds_dir",
    default="../shared/data/odds",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of labelled Parquet files (label column 'label').",
)
@click.option(
    "--data",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another labelled Parquet file (repeatable).",
)
@click.option("--build", is_flag=True, help="Build the performance table first.")
@click.option(
    "--table",
    "table_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Use this table (default: the one shipped with ADP).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where --build writes the table (default: ADP's shipped table).",
)
@click.option("--repeats", default=3, show_default=True, help="Seeds per dataset (--build).")
@click.option("--sample-rows", default=10_000, show_default=True, help="Rows per fit (--build).")
@click.option("--no-criteria", is_flag=True, help="Skip the Model Centrality check.")
@click.option("--scheduler", metavar="ADDRESS", help="Use this cluster, not a new one.")
@click.option("--json", "as_json", is_flag=True, help="Print the table and verdict as JSON.")
@fail_cleanly
def selection(
    odds_dir: Path,
    data: tuple[Path, ...],
    build: bool,
    table_path: Path | None,
    out: Path | None,
    repeats: int,
    sample_rows: int,
    no_criteria: bool,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Label-free selection, leave-one-dataset-out: the pick against the default iForest."""
    from adp.bench.model_search import _connected

    odds = odds_dir if odds_dir.is_dir() else None
    with _connected(scheduler) as client:
        summary, result, _ = run_benchmark(
            odds,
            data,
            build,
            table_path,
            out,
            repeats,
            sample_rows,
            not no_criteria,
            client,
            echo=(lambda _: None) if as_json else click.echo,
        )
    if as_json:
        records = json.loads(summary.to_json(orient="records"))
        click.echo(json.dumps({"datasets": records, "verdict": result}, indent=2))
        return
    columns = ["dataset", *MEASURES, "fallbacks", "picks"]
    click.echo(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    click.echo(
        f"vs default: {result['wins']} wins, {result['ties']} ties, {result['losses']} losses "
        f"of {result['datasets']}; mean {result['mean_delta_auc']:+.4f}, worst "
        f"{result['worst_delta_auc']:+.4f}; target met: {result['target_met']}"
    )


__all__ = ["leave_one_out", "per_dataset", "run_benchmark", "selection", "verdict"]

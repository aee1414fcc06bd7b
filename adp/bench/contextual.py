"""``adp bench context``: context-aware detection measured on the demo and on NAB.

- **demo**: the ``adp demo`` job (its data generator and injected anomalies unchanged) with
  context off (the raw readings) and on (the default), at the same 3% flag rate: precision,
  recall, and recall per kind of anomaly.
- **NAB** (``../shared/data/timeseries/nab.parquet``; its README says how to evaluate):
  window recall (the share of labelled windows with at least one flag) and false alarms
  (flags outside every window per 1,000 rows), per series family, for the plain isolation
  forest on the value (one per series), a trailing robust z-score, and ADP's context
  features with an isolation forest and with ECOD, each fitted one per series like the
  plain forest (``context_*``) and as one detector for the whole fleet (``*_fleet``,
  ``by: series``). Every method flags the same share of each series' rows (its highest
  scores), so they are compared at the same flag budget.

Why one context detector per series: the flags are each series' own top scores, so what
counts is the ranking *within* a series. A fleet forest grows each tree on 256 rows drawn
from all 35 series (about 7 of each), over robust residuals reaching 1e14 (a series of
mostly zeros, such as ``ec2_disk_write_bytes_*``, has a robust scale near 0), so many of a
series' top rows share one score and the budget is filled by time order: on NAB (seed 0),
734 of the fleet forest's 1,593 flags in series with windows were drawn from a tie at the
cut, against 32 for forests fitted per series.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.measure import timed
from adp.errors import BenchmarkError

#: The context of the NAB runs: each series' daily profile and a one-hour window
#: (the ``context_*`` detectors are fitted on one series at a time with it).
NAB_CONTEXT: dict[str, Any] = {
    "by": "series",
    "time": "timestamp",
    "season": {"period": "1d"},
    "window": {"size": 12, "stats": ["mean", "std", "diff"]},
    "normalise": "robust",
}
METHODS = (
    "iforest_value",
    "robust_z",
    "context_iforest",
    "context_ecod",
    "context_iforest_fleet",
    "context_ecod_fleet",
)


def default_nab_path() -> Path:
    """``../shared/data/timeseries/nab.parquet`` beside the repository."""
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "timeseries" / "nab.parquet"


# -- evaluation ---------------------------------------------------------------------------


def windows(labels: np.ndarray) -> np.ndarray:
    """Window ids of the rows of one series: ``k >= 0`` inside its ``k``-th labelled
    window (a maximal run of ``label == 1``), -1 outside every window."""
    labels = np.asarray(labels).astype(bool)
    starts = labels & ~np.concatenate([[False], labels[:-1]])
    ids = np.cumsum(starts) - 1
    return np.where(labels, ids, -1)


def evaluate_windows(frame: pd.DataFrame, flag: str = "flag") -> dict[str, float]:
    """Window recall and false alarms of the ``flag`` column of rows of some series.

    ``frame`` holds ``series``, ``label`` and ``flag``, each series in time order.

    Returns
    -------
    dict
        ``rows``, ``windows``, ``detected``, ``window_recall`` (NaN without windows),
        ``false_alarms`` (flags outside windows) and ``false_alarms_per_1000``.
    """
    total_windows = detected = false_alarms = 0
    for _, group in frame.groupby("series", sort=True):
        ids = windows(group["label"].to_numpy())
        flags = group[flag].to_numpy(dtype=bool)
        n_windows = int(ids.max()) + 1 if len(ids) else 0
        total_windows += n_windows
        if n_windows:
            detected += len(np.unique(ids[flags & (ids >= 0)]))
        false_alarms += int((flags & (ids < 0)).sum())
    rows = len(frame)
    return {
        "rows": rows,
        "windows": total_windows,
        "detected": detected,
        "window_recall": detected / total_windows if total_windows else math.nan,
        "false_alarms": false_alarms,
        "false_alarms_per_1000": 1000 * false_alarms / rows if rows else math.nan,
    }


def flag_top(frame: pd.DataFrame, score: str, rate: float) -> pd.Series:
    """Per series, ``True`` for the ``ceil(rate * n)`` highest scores (ties broken by
    time order, earliest first)."""
    ranks = frame.groupby("series", sort=False)[score].rank(method="first", ascending=False)
    sizes = frame.groupby("series", sort=False)[score].transform("size")
    return ranks <= np.ceil(rate * sizes)


# -- scores -------------------------------------------------------------------------------


def robust_z(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing robust z-score: ``|x - median| / (1.4826 MAD)`` over the previous
    ``window`` rows (the row itself excluded; 0 before there are 12 of them)."""
    series = pd.Series(values)
    past = series.shift(1).rolling(window, min_periods=12)
    median = past.median()
    mad = (series.shift(1) - median).abs().rolling(window, min_periods=12).median()
    scale = 1.4826 * mad
    tiny = 1e-9 * max(1.0, float(np.nanmedian(np.abs(values))) if len(values) else 1.0)
    z = (series - median).abs() / scale.clip(lower=tiny)
    return np.asarray(z.fillna(0.0).to_numpy(dtype=np.float64))


def _adp_scores(ddf: Any, name: str, params: dict[str, Any], **fit: Any) -> pd.Series:
    import adp

    det = adp.create_detector(name, **params).fit(ddf, **fit)
    return det.decision_function(ddf).compute()


def nab_scores(
    frame: pd.DataFrame, *, window: int = 288, npartitions: int = 8, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Every method's scores of every NAB row (columns named after :data:`METHODS`),
    and each method's wall seconds.

    ``iforest_value``, ``context_iforest`` and ``context_ecod`` fit one detector per
    series; ``context_iforest_fleet`` and ``context_ecod_fleet`` one detector for all the
    rows (read from ``npartitions`` Parquet files); ``robust_z`` fits nothing.
    """
    import dask.dataframe as dd

    out = frame.copy()
    seconds: dict[str, float] = {}
    detectors: tuple[tuple[str, dict[str, Any]], ...] = (
        ("iforest", {"random_state": seed}),
        ("ecod", {}),
    )
    with timed() as t:
        scores = []
        for _, group in frame.groupby("series", sort=True):
            part = dd.from_pandas(group[["value"]], npartitions=1)
            scores.append(_adp_scores(part, "iforest", {"random_state": seed}, features=["value"]))
        out["iforest_value"] = pd.concat(scores)
    seconds["iforest_value"] = t.seconds
    with timed() as t:
        out["robust_z"] = _grouped_z(frame, window)
    seconds["robust_z"] = t.seconds
    for name, params in detectors:
        with timed() as t:
            scores = []
            for _, group in frame.groupby("series", sort=True):
                part = dd.from_pandas(group[["series", "timestamp", "value"]], npartitions=1)
                scores.append(
                    _adp_scores(part, name, {**params, "context": NAB_CONTEXT}, features=["value"])
                )
            out[f"context_{name}"] = pd.concat(scores)  # aligned on the rows' index
        seconds[f"context_{name}"] = t.seconds
    with tempfile.TemporaryDirectory(prefix="adp-bench-nab-") as tmp:
        # read from files, as a lake is, rather than embedding the table in the graph
        columns = frame[["series", "timestamp", "value"]].rename_axis("row").reset_index()
        for i, rows in enumerate(np.array_split(np.arange(len(frame)), npartitions)):
            columns.iloc[rows].to_parquet(Path(tmp) / f"part-{i:03d}.parquet", index=False)
        ddf = dd.read_parquet(tmp, index="row")  # scores come back on the rows' numbers
        for name, params in detectors:
            with timed() as t:
                out[f"context_{name}_fleet"] = _adp_scores(
                    ddf, name, {**params, "context": NAB_CONTEXT}, features=["value"]
                )
            seconds[f"context_{name}_fleet"] = t.seconds
    return out, seconds


def _grouped_z(frame: pd.DataFrame, window: int) -> pd.Series:
    return frame.groupby("series", sort=False)["value"].transform(
        lambda v: pd.Series(robust_z(v.to_numpy(), window), index=v.index)
    )


def bench_nab(
    path: Path | None = None,
    *,
    rate: float = 0.01,
    series: list[str] | None = None,
    npartitions: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """The NAB table: one row per series family and method, and an ``all (with
    anomalies)`` row per method over the series that have labelled windows.

    Raises
    ------
    adp.errors.BenchmarkError
        When the data file is missing or names no such series.
    """
    path = path or default_nab_path()
    if not path.exists():
        raise BenchmarkError(f"NAB data not found at {path}: see ../shared/data/timeseries")
    frame = pd.read_parquet(path)
    if series:
        unknown = sorted(set(series) - set(frame["series"]))
        if unknown:
            raise BenchmarkError(f"no NAB series {unknown}; see {path.parent / 'README.md'}")
        frame = frame[frame["series"].isin(series)]
    frame = frame.sort_values(["series", "timestamp"], kind="stable").reset_index(drop=True)
    scored, seconds = nab_scores(frame, npartitions=npartitions, seed=seed)
    scored["family"] = scored["series"].str.split("/").str[0]
    has_windows = scored.groupby("series")["label"].transform("max") > 0
    rows = []
    for method in METHODS:
        scored["flag"] = flag_top(scored, method, rate)
        groups = [(f, g) for f, g in scored.groupby("family", sort=True)]
        groups.append(("all (with anomalies)", scored[has_windows]))
        for family, group in groups:
            rows.append(
                {
                    "family": family,
                    "method": method,
                    "series": group["series"].nunique(),
                    **evaluate_windows(group),
                    "seconds": seconds[method],
                }
            )
    return pd.DataFrame(rows)


# -- the demo -----------------------------------------------------------------------------


#: The demo variants: (context, detector); the demo runs the last one by default.
DEMO_VARIANTS = (
    (False, "isolation_forest"),
    (False, "mcd"),
    (True, "isolation_forest"),
    (True, "mcd"),
)


def bench_demo(
    *, sensors: int = 50, days: int = 14, workdir: Path | None = None, client: Any = None
) -> pd.DataFrame:
    """The demo job with context off and on, each with the isolation forest (the demo
    before context) and the minimum covariance determinant (the demo's detector with
    context): precision, recall, recall per kind, flag rate, wall seconds."""
    from adp.jobs.demo import CONTEXT_DETECTOR, RAW_DETECTOR, demo_spec
    from adp.jobs.demo_lake import generate
    from adp.jobs.runner import run_job

    detectors = {"isolation_forest": RAW_DETECTOR, "mcd": CONTEXT_DETECTOR}
    with tempfile.TemporaryDirectory(prefix="adp-bench-context-", dir=workdir) as tmp:
        root = Path(tmp)
        generate(root / "lake", sensors=sensors, days=days)
        rows = []
        for context, name in DEMO_VARIANTS:
            out = root / f"out-{context}-{name}"
            spec = demo_spec(root / "lake", out, context=context, detector=detectors[name])
            result = run_job(spec, client=client, show_progress=False, check=False)
            evaluation = result.evaluation
            assert evaluation is not None  # the demo spec has an evaluate section
            rows.append(
                {
                    "context": "on" if context else "off",
                    "detector": name,
                    "rows": result.rows,
                    "flag_rate": result.anomaly_share,
                    "precision": evaluation.precision,
                    "recall": evaluation.recall,
                    **{f"recall_{k}": v for k, v in evaluation.recall_by_kind().items()},
                    "seconds": result.wall_seconds,
                }
            )
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def _seeds(ctx: click.Context, param: click.Parameter, text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()] or [0]
    except ValueError as exc:
        raise click.BadParameter(
            f"seeds must be comma-separated integers, got {text!r}", ctx=ctx, param=param
        ) from exc


@click.command("context")
@click.option("--demo/--no-demo", default=True, show_default=True, help="Run the demo part.")
@click.option("--nab/--no-nab", default=True, show_default=True, help="Run the NAB part.")
@click.option("--sensors", default=50, show_default=True, help="Demo fleet size.")
@click.option("--days", default=14, show_default=True, help="Demo days.")
@click.option("--nab-path", default=None, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--rate", default=0.01, show_default=True, help="NAB: flagged share per series.")
@click.option("--workers", default=2, show_default=True, help="Local worker processes.")
@click.option(
    "--seeds",
    default="0",
    show_default=True,
    callback=_seeds,
    help="NAB: comma-separated detector seeds (one table each, a seed column).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON records.")
def context(
    demo: bool,
    nab: bool,
    sensors: int,
    days: int,
    nab_path: Path | None,
    rate: float,
    workers: int,
    seeds: list[int],
    as_json: bool,
) -> None:
    """Context-aware detection: the demo with context off vs on, and NAB window recall."""
    from adp.cluster import connect

    results: dict[str, pd.DataFrame] = {}
    with connect(n_workers=workers, threads_per_worker=1, dashboard_address=":0") as client:
        if demo:
            results["demo"] = bench_demo(sensors=sensors, days=days, client=client)
        if nab:
            tables = [bench_nab(nab_path, rate=rate, seed=seed).assign(seed=seed) for seed in seeds]
            results["nab"] = pd.concat(tables, ignore_index=True)
    if as_json:
        records = {k: v.to_dict(orient="records") for k, v in results.items()}
        click.echo(json.dumps(records, default=float))
        return
    for name, frame in results.items():
        click.echo(f"\n{name}\n")
        click.echo(_markdown(frame))

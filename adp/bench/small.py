"""``adp bench small``: fit + detect on a small frame, against PyOD in the same process.

A notebook user with a table of a few thousand rows should not wait for the cluster: ADP's
``fit`` then ``detect(...).compute()`` on a one-partition frame of ``--rows`` x
``--features`` should take at most twice PyOD's ``fit`` + ``decision_function`` on the same
array, plus 50 ms. Both are timed best of ``--repeats`` in this process, on a LocalCluster
client (so a round trip to the cluster would be paid, were one made); PyOD uses the
estimator ADP builds for the detector, with the same parameters.

For reference, ADP is also timed on the same rows split into two partitions, which always
runs on the cluster (``adp_cluster_seconds``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import click
import numpy as np
import pandas as pd

from adp.bench.measure import best_of, cluster

DEFAULT_DETECTORS = ("iforest", "ecod", "hbos", "copod", "knn", "lof")
TARGET_FACTOR = 2.0
TARGET_SLACK_SECONDS = 0.05


@dataclass
class SmallRun:
    """One detector's timings (best of the repeats, seconds)."""

    detector: str
    pyod_seconds: float
    adp_seconds: float
    adp_cluster_seconds: float
    target_seconds: float
    passed: bool


def small_frame(rows: int, features: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` x ``features`` standard normal values, 1% of the rows shifted far out."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, features))
    outliers = max(1, rows // 100)
    X[:outliers] += rng.choice([-6.0, 6.0], size=(outliers, features))
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(features)])


def pyod_fit_score(detector: str, X: np.ndarray) -> np.ndarray:
    """PyOD alone: the estimator ADP builds for ``detector``, ``fit`` then
    ``decision_function`` on ``X``."""
    from adp.detect.registry import detector_info

    estimator = detector_info(detector).build({}, 0.1, n_features=X.shape[1])
    estimator.fit(X)
    return np.asarray(estimator.decision_function(X))


def adp_fit_detect(detector: str, ddf: Any) -> pd.DataFrame:
    """ADP: ``fit`` then ``detect(...).compute()`` on ``ddf``."""
    import adp

    det = adp.create_detector(detector).fit(ddf)
    result: pd.DataFrame = det.detect(ddf).compute()
    return result


def bench_small(
    rows: int = 1000,
    features: int = 20,
    detectors: tuple[str, ...] = ("iforest", "ecod", "hbos"),
    repeats: int = 5,
    client: Any = None,
) -> dict[str, Any]:
    """Time PyOD and ADP on one small frame for each detector.

    Parameters
    ----------
    rows, features : int
        The frame's shape.
    detectors : tuple of str
        Registered detector names.
    repeats : int
        Timed runs of each variant; the best counts (after one untimed warm-up run).
    client : distributed.Client, optional
        The cluster ADP's client uses; default a LocalCluster of 2 workers started here.

    Returns
    -------
    dict
        ``rows``, ``features``, ``repeats`` and ``runs`` (one :class:`SmallRun` each, as a
        dict).
    """
    import dask.dataframe as dd

    frame = small_frame(rows, features)
    X = frame.to_numpy()
    one = dd.from_pandas(frame, npartitions=1)
    two = dd.from_pandas(frame, npartitions=2)
    runs = []
    with cluster(client, n_workers=2, reuse_current=True):
        for name in detectors:
            pyod_fit_score(name, X)  # warm-up: imports, compilation
            adp_fit_detect(name, one)
            adp_fit_detect(name, two)
            pyod, _ = best_of(partial(pyod_fit_score, name, X), repeats)
            local, _ = best_of(partial(adp_fit_detect, name, one), repeats)
            remote, _ = best_of(partial(adp_fit_detect, name, two), repeats)
            target = TARGET_FACTOR * pyod + TARGET_SLACK_SECONDS
            runs.append(SmallRun(name, pyod, local, remote, target, local <= target))
    return {
        "rows": rows,
        "features": features,
        "repeats": repeats,
        "runs": [asdict(r) for r in runs],
    }


def format_table(result: dict[str, Any]) -> str:
    """The result as a Markdown table (seconds, best of the repeats)."""
    lines = [
        f"fit + detect, {result['rows']} rows x {result['features']} features, "
        f"best of {result['repeats']}",
        "",
        "| detector | PyOD s | ADP s | target s (2x PyOD + 0.05) | pass | ADP, 2 partitions s |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for r in result["runs"]:
        lines.append(
            f"| {r['detector']} | {r['pyod_seconds']:.4f} | {r['adp_seconds']:.4f} | "
            f"{r['target_seconds']:.4f} | {'yes' if r['passed'] else 'NO'} | "
            f"{r['adp_cluster_seconds']:.4f} |"
        )
    return "\n".join(lines)


@click.command("small")
@click.option("--rows", default=1000, show_default=True)
@click.option("--features", default=20, show_default=True)
@click.option(
    "--detectors",
    default="iforest,ecod,hbos",
    show_default=True,
    help=f"Comma-separated names (cheap ones: {', '.join(DEFAULT_DETECTORS)}).",
)
@click.option("--repeats", default=5, show_default=True, help="Best of this many runs.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def small(rows: int, features: int, detectors: str, repeats: int, as_json: bool) -> None:
    """Fit + detect on a small frame within 2x PyOD + 50 ms (exit 1 if any fails)."""
    names = tuple(d.strip() for d in detectors.split(",") if d.strip())
    result = bench_small(rows, features, names, repeats)
    click.echo(json.dumps(result) if as_json else format_table(result))
    if not all(r["passed"] for r in result["runs"]):
        raise SystemExit(1)

"""``adp bench accuracy``: ADP's ROC-AUC on the shared ODDS datasets, beside single-process
PyOD under the same protocol and the published figures under theirs.

Same protocol ("fit on all rows, score the same rows"): ADP splits each dataset into
``npartitions`` partitions, fits on a sample that holds every row (so the fitted model sees
exactly PyOD's training matrix, in the same order) and scores every partition in parallel;
single-process PyOD fits the same estimator on the whole matrix. The PyOD reference is the
score PyOD gives those rows as *new* rows, ``decision_function(X)``, which is what ADP
computes for every row it scores; for ECOD and COPOD, whose ``decision_function`` re-fits on
training + scored rows, it is ``decision_scores_`` (ADP's frozen ECDFs reproduce those
exactly). ``pyod_train_auc`` gives the AUC of PyOD's ``decision_scores_`` for every detector:
for KNN and LOF it differs, because a training row is left out of its own neighbourhood
there but is its own nearest neighbour when scored as a new row.

Published protocols (``published_auc.csv``, see ``../shared/data/README.md``) split the
data into train and test sets and scale the features, so their figures differ from
all-rows figures; ``note`` says why wherever ADP differs from a published figure by more
than 0.015. ``--published-protocol`` also runs ADP under PyOD's benchmark protocol (60/40
split with ``RandomState(i)``, standardised features, mean test AUC over seeds).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import dask
import numpy as np
import pandas as pd

from adp.bench.measure import cluster, timed

DEFAULT_DETECTORS = (
    "isolation_forest",
    "ecod",
    "copod",
    "hbos",
    "knn",
    "lof",
    "pca",
    "one_class_svm",
)
PUBLISHED_NAMES = {
    "isolation_forest": "IForest",
    "ecod": "ECOD",
    "copod": "COPOD",
    "hbos": "HBOS",
    "knn": "KNN",
    "lof": "LOF",
    "pca": "PCA",
    "one_class_svm": "OCSVM",
}
#: Detectors whose PyOD ``decision_function`` re-fits on the scored rows.
_TRAINING_SCORE_REFERENCE = {"ecod", "copod"}
SEEDED_TOLERANCE = 0.015
DETERMINISTIC_TOLERANCE = 1e-6
_PROTOCOLS = {
    "adbench-2022": (
        "ADBench scores a held-out 30% test split (70/30 stratified, MinMax-scaled, "
        "resampled to 1000-10000 rows, mean of 3 seeds)"
    ),
    "pyod-benchmark-2024": (
        "PyOD's benchmark scores a held-out 40% test split (standardised, mean of 10 seeds)"
    ),
}
#: Short reasons used in the ``note`` column; :data:`LEGEND` spells them out.
LEGEND = {
    "A": "ADBench-2022 protocol: " + _PROTOCOLS["adbench-2022"],
    "P": "PyOD benchmark protocol: " + _PROTOCOLS["pyod-benchmark-2024"],
    "E": "ADBench's ECOD figure predates PyOD 0.9.9's ECOD fix",
    "N": "all-rows scoring: a scored training row is its own nearest neighbour, "
    "which blunts distance and density detectors (KNN, LOF) compared with a test split",
    "I": "some scores are infinite (PyOD's PCA divides by zero-variance components of "
    "constant columns); they rank above every finite score, ties among them",
}
_CODES = {"adbench-2022": "A", "pyod-benchmark-2024": "P"}
#: (dataset, detector) pairs left out unless asked for, and why.
SLOW = {
    ("shuttle", "one_class_svm"): (
        "skipped by default: libsvm's fit on 49097 rows takes ~4 min and scoring them against "
        "27k support vectors ~2 min, twice (ADP and PyOD); run with --all"
    ),
}


def default_odds_dir() -> Path:
    """``../shared/data/odds`` relative to the working directory (the project root)."""
    return Path.cwd().parent / "shared" / "data" / "odds"


def available_datasets(odds_dir: Path) -> list[str]:
    """The dataset names in ``MANIFEST.csv``."""
    return pd.read_csv(odds_dir / "MANIFEST.csv")["dataset"].tolist()


def load_dataset(odds_dir: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The feature matrix (float64) and labels (1 = anomaly) of one dataset."""
    path = odds_dir / f"{name}.parquet"
    if not path.exists():
        from adp.errors import DataError

        raise DataError(f"no dataset {name!r}: {path} does not exist")
    frame = pd.read_parquet(path)
    features = [c for c in frame.columns if c != "label"]
    return frame[features].to_numpy(np.float64), frame["label"].to_numpy(np.int64)


def published_figures(odds_dir: Path) -> pd.DataFrame:
    """``published_auc.csv`` as a frame indexed by (source, dataset, detector)."""
    return pd.read_csv(odds_dir / "published_auc.csv").set_index(["source", "dataset", "detector"])


def _params(detector: str, random_state: int) -> dict[str, Any]:
    from adp.detect.registry import detector_info

    info = detector_info(detector)
    return {"random_state": random_state} if "random_state" in info.valid_params() else {}


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC; infinite scores rank above (below) every finite one, NaN gives NaN."""
    from sklearn.metrics import roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        return float("nan")
    finite = scores[np.isfinite(scores)]
    if finite.size < scores.size:
        high = finite.max() + 1 if finite.size else 1.0
        low = finite.min() - 1 if finite.size else -1.0
        scores = np.nan_to_num(scores, posinf=high, neginf=low)
    return float(roc_auc_score(labels, scores))


def _frame(X: np.ndarray, npartitions: int) -> Any:
    import dask.dataframe as dd

    columns = [f"f{j}" for j in range(X.shape[1])]
    return dd.from_pandas(pd.DataFrame(X, columns=columns), npartitions=npartitions, sort=True)


def adp_scores(
    detector: str, X_train: np.ndarray, X_score: np.ndarray, npartitions: int, random_state: int
) -> tuple[np.ndarray, Any]:
    """Fit ADP on every row of ``X_train`` (partitioned) and score ``X_score``, in row order."""
    from adp.detect.detector import create_detector

    train = _frame(X_train, npartitions)
    det = create_detector(detector, **_params(detector, random_state))
    det.fit(train, sample_rows=len(X_train), random_state=random_state)
    target = train if X_score is X_train else _frame(X_score, npartitions)
    scored = det.decision_function(target).compute().sort_index()
    return scored.to_numpy(), det


def pyod_scores(
    detector: str, X_train: np.ndarray, X_score: np.ndarray, random_state: int
) -> tuple[np.ndarray, np.ndarray]:
    """Single-process PyOD: (the reference scores of ``X_score``, ``decision_scores_``)."""
    from threadpoolctl import threadpool_limits

    from adp.detect.registry import detector_info

    estimator = detector_info(detector).build(_params(detector, random_state), 0.1)
    # One BLAS thread, as on ADP's workers: PCA's near-zero eigenvalues (constant columns)
    # otherwise come out differently, and its scores with them.
    with threadpool_limits(limits=1):
        estimator.fit(X_train)
        train_scores = np.asarray(estimator.decision_scores_, dtype=np.float64)
        if detector in _TRAINING_SCORE_REFERENCE and X_score is X_train:
            return train_scores, train_scores
        scores = np.asarray(estimator.decision_function(X_score), dtype=np.float64)
    return scores, train_scores


def _note(detector: str, adp_auc: float, published: dict[str, float], infinite: int = 0) -> str:
    """Codes of :data:`LEGEND` that explain a gap above 0.015 to a published figure."""
    codes = [f"I ({infinite} rows)"] if infinite else []
    for source, value in published.items():
        if np.isnan(value) or abs(adp_auc - value) <= SEEDED_TOLERANCE:
            continue
        codes.append(f"{_CODES[source]} ({adp_auc - value:+.3f})")
        if detector == "ecod" and source == "adbench-2022":
            codes.append("E")
    if codes and detector in ("knn", "lof"):
        codes.append("N")
    return ", ".join(codes)


def _published_protocol_auc(
    detector: str,
    X: np.ndarray,
    y: np.ndarray,
    npartitions: int,
    seeds: int,
) -> tuple[float, float]:
    """(ADP, PyOD) mean test ROC-AUC under PyOD's benchmark protocol."""
    from pyod.utils.utility import standardizer
    from sklearn.model_selection import train_test_split

    adp_aucs, pyod_aucs = [], []
    for i in range(seeds):
        X_train, X_test, _, y_test = train_test_split(
            X, y, test_size=0.4, random_state=np.random.RandomState(i)
        )
        X_train, X_test = standardizer(X_train, X_test)
        scores, _ = adp_scores(detector, X_train, X_test, npartitions, i)
        adp_aucs.append(round(_auc(y_test, scores), 4))
        estimator_scores, _ = pyod_scores(detector, X_train, X_test, i)
        pyod_aucs.append(round(_auc(y_test, estimator_scores), 4))
    return float(np.mean(adp_aucs)), float(np.mean(pyod_aucs))


def bench_accuracy(
    datasets: Sequence[str] | None = None,
    detectors: Sequence[str] | None = None,
    client: Any = None,
    *,
    odds_dir: Path | None = None,
    npartitions: int = 4,
    random_state: int = 0,
    published_protocol: bool = False,
    seeds: int = 10,
    include_slow: bool = False,
) -> pd.DataFrame:
    """ROC-AUC of ADP, single-process PyOD and the published figures, per dataset and detector.

    Parameters
    ----------
    datasets : sequence of str, optional
        Dataset names (default: every dataset in ``MANIFEST.csv``).
    detectors : sequence of str, optional
        Registered detector names (default :data:`DEFAULT_DETECTORS`).
    client : distributed.Client, optional
        The cluster to use; default a LocalCluster of 2 worker processes, closed after.
    odds_dir : Path, optional
        Where the datasets are (default ``../shared/data/odds``).
    npartitions : int
        Partitions ADP splits each dataset into (at least 4 for the parity claim).
    random_state : int
        Seed of the randomised detectors (the same for ADP and PyOD).
    published_protocol : bool
        Also run ADP and PyOD under PyOD's benchmark protocol (columns
        ``adp_auc_pyod_protocol`` and ``pyod_auc_pyod_protocol``), for the datasets it covers.
    seeds : int
        Splits of the published protocol.
    include_slow : bool
        Also run the pairs in :data:`SLOW` (otherwise they get a row saying why not).

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, detector): ``adp_auc``, ``pyod_auc`` (same protocol),
        ``abs_diff``, ``tolerance``, ``parity``, ``pyod_train_auc``, the published figures
        (``adbench-2022``, ``pyod-benchmark-2024``), ``note`` and timings.
    """
    from adp.detect.registry import detector_info

    odds_dir = Path(odds_dir) if odds_dir is not None else default_odds_dir()
    datasets = list(datasets or available_datasets(odds_dir))
    detectors = [detector_info(d).name for d in (detectors or DEFAULT_DETECTORS)]
    published = published_figures(odds_dir)
    rows = []
    with cluster(client, reuse_configured=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dataset in datasets:
            X, y = load_dataset(odds_dir, dataset)
            for detector in detectors:
                if (dataset, detector) in SLOW and not include_slow:
                    rows.append(
                        {
                            "dataset": dataset,
                            "detector": detector,
                            "rows": len(y),
                            "parity": None,
                            "note": SLOW[(dataset, detector)],
                        }
                    )
                    continue
                with timed() as adp_timer:
                    adp_s, _ = adp_scores(detector, X, X, npartitions, random_state)
                with timed() as pyod_timer:
                    ref, train = pyod_scores(detector, X, X, random_state)
                adp_auc, pyod_auc = _auc(y, adp_s), _auc(y, ref)
                deterministic = detector_info(detector).deterministic
                tolerance = DETERMINISTIC_TOLERANCE if deterministic else SEEDED_TOLERANCE
                figures = {
                    source: float(
                        published["roc_auc"].get(
                            (source, dataset, PUBLISHED_NAMES.get(detector, "")), np.nan
                        )
                    )
                    for source in _PROTOCOLS
                }
                row: dict[str, Any] = {
                    "dataset": dataset,
                    "detector": detector,
                    "rows": len(y),
                    "adp_auc": adp_auc,
                    "pyod_auc": pyod_auc,
                    "abs_diff": abs(adp_auc - pyod_auc),
                    "tolerance": tolerance,
                    "parity": abs(adp_auc - pyod_auc) <= tolerance,
                    "pyod_train_auc": _auc(y, train),
                    **figures,
                    "note": _note(detector, adp_auc, figures, int((~np.isfinite(adp_s)).sum())),
                    "adp_seconds": adp_timer.seconds,
                    "pyod_seconds": pyod_timer.seconds,
                }
                if published_protocol and not np.isnan(figures["pyod-benchmark-2024"]):
                    adp_p, pyod_p = _published_protocol_auc(detector, X, y, npartitions, seeds)
                    row["adp_auc_pyod_protocol"] = adp_p
                    row["pyod_auc_pyod_protocol"] = pyod_p
                rows.append(row)
    return pd.DataFrame(rows)


def bench_auto_threshold(
    datasets: Sequence[str] | None = None,
    detectors: Sequence[str] | None = None,
    client: Any = None,
    *,
    odds_dir: Path | None = None,
    npartitions: int = 4,
    random_state: int = 0,
) -> pd.DataFrame:
    """How ``contamination="auto"`` (MAD and IQR rules) and PyOD's default 0.1 flag each dataset.

    Every rule runs through ADP's distributed threshold code on ADP's scores of all rows.
    Pairs whose scores are not all finite (PCA on a dataset with constant columns) are left
    out: no threshold can be set on them.

    Returns
    -------
    pandas.DataFrame
        One row per (dataset, detector, rule): ``flagged`` share, the true anomaly share,
        ``precision``, ``recall`` and ``f1`` against the labels.
    """
    from adp.detect.detector import create_detector
    from adp.detect.threshold import from_spec

    odds_dir = Path(odds_dir) if odds_dir is not None else default_odds_dir()
    datasets = list(datasets or available_datasets(odds_dir))
    detectors = list(detectors or DEFAULT_DETECTORS)
    rules = {
        "auto-mad": from_spec(contamination="auto", auto_method="mad"),
        "auto-iqr": from_spec(contamination="auto", auto_method="iqr"),
        "contamination=0.1": from_spec(contamination=0.1),
    }
    rows = []
    with cluster(client, reuse_configured=True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dataset in datasets:
            X, y = load_dataset(odds_dir, dataset)
            ddf = _frame(X, npartitions)
            for detector in detectors:
                if (dataset, detector) in SLOW:
                    continue
                det = create_detector(detector, **_params(detector, random_state))
                det.fit(ddf, sample_rows=len(y), random_state=random_state)
                scored = det.decision_function(ddf).persist()
                scores = scored.compute().sort_index().to_numpy()
                if not np.isfinite(scores).all():  # PCA on constant columns: infinite scores
                    continue
                resolved = dask.compute(*[r.resolve(scored) for r in rules.values()])
                for rule_name, threshold in zip(rules, map(float, resolved), strict=True):
                    flagged = scores >= threshold
                    hits = int((flagged & (y == 1)).sum())
                    precision = hits / flagged.sum() if flagged.any() else 0.0
                    recall = hits / max(1, int(y.sum()))
                    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
                    rows.append(
                        {
                            "dataset": dataset,
                            "detector": detector,
                            "rule": rule_name,
                            "flagged": float(flagged.mean()),
                            "true_share": float(y.mean()),
                            "precision": precision,
                            "recall": recall,
                            "f1": f1,
                        }
                    )
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool | np.bool_):
            return "yes" if value else "NO"
        if isinstance(value, float):
            return "" if np.isnan(value) else f"{value:.4f}"
        return str(value)

    lines = [
        "| " + " | ".join(frame.columns) + " |",
        "|" + "---|" * len(frame.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


@click.command("accuracy")
@click.option("--datasets", default=None, help="Comma-separated names (default: all).")
@click.option("--detectors", default=None, help="Comma-separated names (default: the core 8).")
@click.option("--odds-dir", default=None, type=click.Path(path_type=Path, file_okay=False))
@click.option("--partitions", default=4, show_default=True, help="Partitions per dataset.")
@click.option(
    "--published-protocol", is_flag=True, help="Also run PyOD's benchmark protocol (slow)."
)
@click.option("--thresholds", is_flag=True, help="Evaluate contamination='auto' instead.")
@click.option("--all", "include_slow", is_flag=True, help="Include the slow pairs (SLOW).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON records.")
def accuracy(
    datasets: str | None,
    detectors: str | None,
    odds_dir: Path | None,
    partitions: int,
    published_protocol: bool,
    thresholds: bool,
    include_slow: bool,
    as_json: bool,
) -> None:
    """ROC-AUC of ADP vs single-process PyOD vs published figures on the ODDS datasets."""
    names = datasets.split(",") if datasets else None
    dets = detectors.split(",") if detectors else None
    if thresholds:
        frame = bench_auto_threshold(names, dets, odds_dir=odds_dir, npartitions=partitions)
    else:
        frame = bench_accuracy(
            names,
            dets,
            odds_dir=odds_dir,
            npartitions=partitions,
            published_protocol=published_protocol,
            include_slow=include_slow,
        )
    if as_json:
        click.echo(json.dumps(frame.to_dict(orient="records"), default=float))
        return
    shown = frame.drop(columns=[c for c in ("adp_seconds", "pyod_seconds") if c in frame])
    click.echo(_markdown(shown))
    if "note" in frame:
        click.echo("\nNotes: " + "; ".join(f"{k}: {v}" for k, v in LEGEND.items()) + ".")
    if "parity" in frame:
        checked = frame[frame["parity"].notna()]
        failed = checked[~checked["parity"].astype(bool)]
        outside = ", ".join(failed["dataset"] + "/" + failed["detector"])
        click.echo(
            f"\n{len(checked) - len(failed)}/{len(checked)} within tolerance of single-process "
            f"PyOD; {len(frame) - len(checked)} skipped"
            + (f"; outside: {outside}" if outside else "")
        )

"""The one-class SVM: PyOD's exact ``OCSVM`` against the approximate ``ocsvm_nystroem``.

Two measurements, with BLAS pinned to one thread:

* **cost**: both fitted on ``fit_rows`` standard-normal rows; the exact detector scores at
  most ``reference_rows`` rows (its cost per row is fixed by its support vectors), the
  approximate one all ``rows``; both reported in seconds per million rows.
* **accuracy**: on every ODDS set in ``odds_dir``, both fitted on the same seeded sample of
  at most ``odds_fit_rows`` rows (the exact fit is quadratic to cubic) and scored on every
  row; the ROC-AUC of each against the labels, and their difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from adp.bench.measure import best_of

ODDS_DIR = Path("/work/shared/data/odds")


def _odds_sets(odds_dir: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    import pandas as pd

    sets = []
    for path in sorted(odds_dir.glob("*.parquet")):
        frame = pd.read_parquet(path)
        labels = frame["label"].to_numpy()
        features = frame.drop(columns=["label"]).to_numpy(dtype=np.float64)
        sets.append((path.stem, features, labels))
    return sets


def measure_ocsvm_nystroem(
    rows: int = 1_000_000,
    features: int = 20,
    repeats: int = 1,
    fit_rows: int = 5_000,
    reference_rows: int = 20_000,
    odds_dir: Path | str | None = ODDS_DIR,
    odds_fit_rows: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Seconds per million rows of both detectors, and their ROC-AUC on the ODDS sets.

    Returns
    -------
    dict
        ``exact_seconds_per_million``, ``nystroem_seconds_per_million``, ``speedup``,
        ``exact_n_support``, and ``odds``: one entry per dataset with ``exact_auc``,
        ``nystroem_auc`` and ``auc_difference`` (approximate minus exact), plus
        ``mean_abs_auc_difference`` and ``max_abs_auc_difference`` over the datasets.
    """
    from pyod.models.ocsvm import OCSVM
    from sklearn.metrics import roc_auc_score

    from adp.detect.nystroem import NystroemOCSVM

    rng = np.random.default_rng(seed)
    X_fit = rng.standard_normal((min(fit_rows, rows), features))
    X = rng.standard_normal((rows, features))
    shared = X[: min(rows, reference_rows)]
    report: dict[str, Any] = {"rows": rows, "features": features, "fit_rows": len(X_fit)}
    with threadpool_limits(1):
        exact = OCSVM().fit(X_fit)
        approx = NystroemOCSVM().fit(X_fit)
        exact_seconds, _ = best_of(lambda: exact.decision_function(shared), repeats)
        approx_seconds, _ = best_of(lambda: approx.decision_function(X), repeats)
        exact_rate = exact_seconds / len(shared) * 1e6
        approx_rate = approx_seconds / rows * 1e6
        report.update(
            exact_seconds_per_million=exact_rate,
            nystroem_seconds_per_million=approx_rate,
            speedup=exact_rate / approx_rate,
            exact_n_support=int(exact.detector_.support_.shape[0]),
        )
        odds: list[dict[str, Any]] = []
        for name, data, labels in _odds_sets(Path(odds_dir)) if odds_dir else []:
            sample = np.sort(
                np.random.default_rng(seed).choice(
                    len(data), size=min(len(data), odds_fit_rows), replace=False
                )
            )
            exact_auc = roc_auc_score(labels, OCSVM().fit(data[sample]).decision_function(data))
            approx_auc = roc_auc_score(
                labels, NystroemOCSVM(random_state=seed).fit(data[sample]).decision_function(data)
            )
            odds.append(
                {
                    "dataset": name,
                    "rows": len(data),
                    "fit_rows": len(sample),
                    "exact_auc": float(exact_auc),
                    "nystroem_auc": float(approx_auc),
                    "auc_difference": float(approx_auc - exact_auc),
                }
            )
    report["odds"] = odds
    differences = [abs(float(entry["auc_difference"])) for entry in odds]
    report["mean_abs_auc_difference"] = float(np.mean(differences)) if differences else None
    report["max_abs_auc_difference"] = float(np.max(differences)) if differences else None
    return report


__all__ = ["ODDS_DIR", "measure_ocsvm_nystroem"]

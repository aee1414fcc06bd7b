"""Building the performance table over labelled Parquet datasets, on the cluster.

:func:`build_table` is what ``adp bench selection --build`` runs; see
:mod:`adp.tuning.perftable` for the protocol and the file it writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import Client

from adp.errors import DataError
from adp.tuning.metafeatures import compute_metafeatures
from adp.tuning.perftable import (
    CANDIDATES,
    PerformanceTable,
    Run,
    candidate_for,
    empty_table,
    provenance,
    sha256_file,
)


def _metric(y: np.ndarray, scores: np.ndarray | None, kind: str) -> float:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if scores is None:
        return math.nan
    if kind == "roc_auc":
        return float(roc_auc_score(y, scores))
    return float(average_precision_score(y, scores))


def open_labelled(path: str | Path, label: str = "label") -> tuple[Any, list[str]]:
    """A labelled Parquet dataset as a dask DataFrame and its feature columns.

    Raises
    ------
    adp.errors.DataError
        When the file is missing, has no ``label`` column, or no numeric feature.
    """
    import dask.dataframe as dd

    from adp.detect.features import resolve_features

    source = Path(path)
    if not source.exists():
        raise DataError(f"labelled dataset {source} does not exist")
    ddf = dd.read_parquet(str(source))
    if label not in ddf.columns:
        raise DataError(
            f"labelled dataset {source} has no label column {label!r}; "
            f"its columns are {list(ddf.columns)[:20]}"
        )
    return ddf, resolve_features(ddf, None, exclude=[label])


def evaluate_run(
    client: Client,
    name: str,
    ddf: Any,
    features: list[str],
    seed: int,
    sample_rows: int,
    label: str = "label",
) -> Run:
    """Meta-features and every candidate's ROC-AUC and AP on one dataset at one seed."""
    from adp.tuning.engines import place_sample, run_futures

    with client.as_current():
        meta = compute_metafeatures(ddf, features, random_state=seed)
    candidates = [candidate_for(cid, seed, i) for i, (cid, _, _) in enumerate(CANDIDATES)]
    data, _, _ = place_sample(client, ddf, features, label, sample_rows, seed)
    try:
        # criterion=None keeps each trial's scores; the labels only judge them afterwards.
        outcomes, _ = run_futures(
            client,
            data,
            candidates,
            metric="model_centrality",
            criterion=None,
            cv=None,
            cv_seed=seed,
            contamination=0.1,
            deadline=None,
        )
        y = client.submit(getattr, data, "y", pure=False).result()
    finally:
        data.release()
    if y is None or y.min() == y.max():
        raise DataError(f"dataset {name}: the label column needs both 0 and 1 in the sample")
    ok = [o.scores if o.status == "ok" else None for o in outcomes]
    return Run(
        dataset=name,
        seed=seed,
        metafeatures=meta.vector().tolist(),
        roc_auc=[_metric(y, s, "roc_auc") for s in ok],
        average_precision=[_metric(y, s, "average_precision") for s in ok],
        fit_seconds=[float(o.fit_seconds) for o in outcomes],
        metafeature_seconds=meta.seconds,
    )


def build_table(
    paths: Sequence[str | Path],
    client: Client,
    seeds: Sequence[int] = (0, 1, 2),
    sample_rows: int = 10_000,
    label: str = "label",
    progress: Callable[[str], None] | None = None,
) -> PerformanceTable:
    """Build the performance table over labelled Parquet files.

    Parameters
    ----------
    paths : sequence of path
        Parquet files with a 0/1 ``label`` column (1 = anomaly); every other numeric
        column is a feature. A dataset is named after its file's stem.
    client : distributed.Client
        Where the fits run.
    seeds : sequence of int
        One run per dataset and seed (the sample, the meta-features' landmark sample and
        every seeded candidate follow it).
    sample_rows : int
        Rows each candidate is fitted and judged on.
    label : str
    progress : callable, optional
        Called with one line per finished run.

    Returns
    -------
    PerformanceTable

    Raises
    ------
    adp.errors.DataError
        For a missing file or label column, or two files with the same stem.
    """
    table = empty_table()
    stems = [Path(p).stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise DataError(f"datasets are named after their files; these repeat: {duplicates}")
    described = []
    for path in paths:
        ddf, features = open_labelled(path, label)
        name = Path(path).stem
        with client.as_current():
            counted = dask.compute(ddf.shape[0], ddf[label].sum())
            rows, anomalies = int(counted[0]), int(counted[1])
        described.append(
            {
                "name": name,
                "path": str(path),
                "sha256": sha256_file(path),
                "rows": rows,
                "features": len(features),
                "anomalies": anomalies,
            }
        )
        for seed in seeds:
            started = time.perf_counter()
            run = evaluate_run(client, name, ddf, features, int(seed), sample_rows, label)
            table.runs.append(run)
            if progress is not None:
                best = int(np.nanargmax(run.roc_auc))
                progress(
                    f"{name} seed {seed}: default {run.roc_auc[0]:.3f}, best "
                    f"{table.candidates[best]} {run.roc_auc[best]:.3f} "
                    f"({time.perf_counter() - started:.1f} s)"
                )
    table.provenance = provenance(described, seeds, sample_rows)
    return table


__all__ = ["build_table", "evaluate_run", "open_labelled"]

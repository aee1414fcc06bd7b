"""Explanations: ``top_features`` of flagged rows, native (ECOD) and by ablation (any)."""

from __future__ import annotations

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client

import adp
from adp.detect.explain import explain_flagged
from adp.detect.threshold import flag
from adp.errors import DataError, DetectorError

FEATURES = [f"x{j}" for j in range(8)]


@pytest.fixture(scope="module")
def injected() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Correlated normal data; 50 rows get one feature pushed 7 sigma out (the only change)."""
    rng = np.random.default_rng(7)
    n, d = 4000, len(FEATURES)
    cov = 0.3 * np.ones((d, d)) + 0.7 * np.eye(d)
    X = rng.multivariate_normal(np.zeros(d), cov, size=n)
    rows = rng.choice(n, size=50, replace=False)
    which = rng.integers(0, d, size=rows.size)
    X[rows, which] += rng.choice([-7.0, 7.0], size=rows.size)
    return pd.DataFrame(X, columns=FEATURES), rows, which


@pytest.mark.parametrize(
    ("name", "params", "method"),
    [
        ("ecod", {}, "auto"),  # native: per-feature tail scores
        ("ecod", {}, "ablation"),
        ("isolation_forest", {"n_estimators": 100, "random_state": 0}, "auto"),
        ("knn", {}, "auto"),
    ],
)
def test_injected_feature_ranks_first(client: Client, injected, name, params, method) -> None:
    df, rows, which = injected
    ddf = dd.from_pandas(df, npartitions=6)
    det = adp.create_detector(name, contamination=0.02, **params).fit(ddf)

    # Every injected row explained (flags from the ground truth, as a staged frame would carry)
    truth = np.zeros(len(df), dtype=bool)
    truth[rows] = True
    staged = det.decision_function(ddf).to_frame()
    flags = staged.assign(is_anomaly=dd.from_pandas(pd.Series(truth), npartitions=6))
    explained = explain_flagged(ddf, flags, det, top_k=3, method=method).compute().sort_index()
    first = [explained["top_features"].iloc[r][0] for r in rows]
    share = np.mean([f == FEATURES[w] for f, w in zip(first, which, strict=True)])
    assert share >= 0.9, f"{name}/{method}: injected feature first for {share:.0%}"

    # End to end: only the flagged rows get top_features, three distinct names each
    out = det.detect(ddf, explain=3, explain_method=method).compute().sort_index()
    flagged = out["is_anomaly"].to_numpy()
    assert flagged.sum() == pytest.approx(0.02 * len(df), abs=2)
    assert out.loc[~flagged, "top_features"].isna().all()
    assert all(len(t) == 3 and len(set(t)) == 3 for t in out.loc[flagged, "top_features"])


def test_explain_flagged_on_a_staged_frame(client: Client, injected) -> None:
    """The job runner's pass 2: explanations for a scored frame read back from storage."""
    df, rows, which = injected
    ddf = dd.from_pandas(df, npartitions=4)
    det = adp.create_detector("knn", contamination=0.02).fit(ddf)
    staged = det.decision_function(ddf).to_frame().persist()
    flagged = flag(staged, float(det.threshold_rule().resolve(staged["score"]).compute()))
    out = explain_flagged(ddf, flagged, det, top_k=2).compute().sort_index()
    assert list(out.columns) == ["score", "is_anomaly", "top_features"]
    assert out["top_features"].notna().sum() == out["is_anomaly"].sum()
    hit = [
        out["top_features"].iloc[r][0] == FEATURES[w]
        for r, w in zip(rows, which, strict=True)
        if out["is_anomaly"].iloc[r]
    ]
    assert len(hit) >= 5 and np.mean(hit) >= 0.9

    with pytest.raises(DataError, match="partitions"):
        explain_flagged(dd.from_pandas(df, npartitions=3), flagged, det, top_k=2)
    with pytest.raises(DetectorError, match="at least 1"):
        explain_flagged(ddf, flagged, det, top_k=0)
    with pytest.raises(DataError, match="is_anomaly"):
        explain_flagged(ddf, staged, det, top_k=2)

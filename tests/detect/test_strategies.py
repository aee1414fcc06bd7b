"""Fit strategies on the shared cluster: ``distributed`` isolation forests (trees grown per
group of partitions, merged into one forest) and ``bagging`` (one model per group)."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from distributed import Client
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

import adp
from adp.detect import forest
from adp.detect.fitting import group_parts
from adp.errors import DetectorError


def _data(n: int = 4000, d: int = 5, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    labels = np.zeros(n, dtype=int)
    outliers = rng.choice(n, size=n // 50, replace=False)
    X[outliers] += rng.choice([-6, 6], size=(outliers.size, d))
    labels[outliers] = 1
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(d)]), labels


def _scores(det, ddf: dd.DataFrame) -> np.ndarray:
    return det.decision_function(ddf).compute().sort_index().to_numpy()


def test_merged_forest_is_the_forest_of_all_its_trees() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(600, 3))
    a = IsolationForest(n_estimators=30, max_samples=128, random_state=1).fit(X[:300])
    b = IsolationForest(n_estimators=50, max_samples=128, random_state=2).fit(X[300:])
    merged = forest.merge([a, b])
    assert merged.n_estimators == len(merged.estimators_) == 80
    # score_samples = -2 ** (-mean depth / c(max_samples)): the merged mean depth is the
    # tree-weighted mean of the parts' mean depths.
    log_a, log_b = np.log2(-a.score_samples(X)), np.log2(-b.score_samples(X))
    expected = -(2 ** ((30 * log_a + 50 * log_b) / 80))
    np.testing.assert_allclose(merged.score_samples(X), expected, rtol=1e-10)
    c = IsolationForest(n_estimators=5, max_samples=64).fit(X)
    with pytest.raises(DetectorError, match="max_samples"):
        forest.merge([a, c])


def test_group_parts_keeps_order_and_balances_rows() -> None:
    groups = group_parts([100, 100, 100, 100, 100, 100, 100], 2)
    assert [i for g in groups for i in g] == list(range(7))
    assert len(groups) == 2 and abs(len(groups[0]) - len(groups[1])) <= 1
    assert group_parts([5, 5], 8) == [[0], [1]]


@pytest.mark.parametrize("name", ["isolation_forest", "sklearn_isolation_forest"])
def test_distributed_forest_grows_every_tree_and_finds_the_outliers(client: Client, name) -> None:
    df, labels = _data()
    ddf = dd.from_pandas(df, npartitions=8)
    det = adp.create_detector(name, n_estimators=60, random_state=0)
    det.fit(ddf, strategy="distributed", n_models=3)
    assert det.strategy_ == "distributed" and det.n_models_ == 3
    merged = det.scorer_.forest
    assert len(merged.estimators_) == 60 and merged._max_samples == 256
    scores = _scores(det, ddf)
    assert roc_auc_score(labels, scores) > 0.97
    # the same rows in another partitioning get the same scores
    np.testing.assert_allclose(_scores(det, dd.from_pandas(df, npartitions=3)), scores)

    sampled = adp.create_detector(name, n_estimators=60, random_state=0).fit(ddf)
    rank_corr = pd.Series(scores).corr(pd.Series(_scores(sampled, ddf)), method="spearman")
    assert rank_corr > 0.9
    if name == "isolation_forest":  # PyOD's scale: offset_ set on the whole sample
        flagged = (scores > 0).mean()
        assert 0.05 < flagged < 0.15  # contamination 0.1 of the training sample


def test_distributed_is_only_for_forests(client: Client) -> None:
    df, _ = _data(400)
    with pytest.raises(DetectorError, match="supports sample, bagging"):
        adp.create_detector("ecod").fit(dd.from_pandas(df, npartitions=2), strategy="distributed")
    with pytest.raises(DetectorError, match="unknown fit strategy"):
        adp.create_detector("ecod").fit(dd.from_pandas(df, npartitions=2), strategy="spark")


def test_bagging_fits_one_model_per_group_and_averages_standardised_scores(client) -> None:
    df, labels = _data()
    ddf = dd.from_pandas(df, npartitions=6)
    det = adp.create_detector("knn", n_neighbors=10).fit(ddf, strategy="bagging", n_models=3)
    assert det.n_models_ == 3
    members = det.scorer_.scorers
    assert len(members) == 3
    fitted_rows = [len(m.search.X_train) for m in members]  # each member keeps its rows
    assert sum(fitted_rows) == len(df)  # every sampled row in exactly one model
    X = df.to_numpy()
    manual = np.mean(
        [(m.decision_function(X) - s.mean) / s.std for m, s in zip(members, det.scorer_.stats)],
        axis=0,
    )
    scores, scores_3 = dask.compute(
        det.decision_function(ddf), det.decision_function(dd.from_pandas(df, npartitions=3))
    )
    np.testing.assert_allclose(scores.sort_index(), manual, rtol=1e-10)
    np.testing.assert_allclose(scores_3.sort_index(), manual, rtol=1e-10)
    assert roc_auc_score(labels, manual) > 0.97

"""KNN and LOF scored on the exact blocked search give PyOD's scores."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyod.models.knn import KNN
from pyod.models.lof import LOF
from sklearn.neighbors import LocalOutlierFactor

from adp.detect import fitting
from adp.detect.neighbor_scorers import KnnScorer, LofScorer, knn_scorer, lof_scorer
from adp.detect.neighbors import COF, SOD
from adp.detect.registry import detector_info
from adp.detect.scorers import NegatedSklearnScorer, PyODScorer


@pytest.fixture(scope="module")
def continuous() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((2500, 20))
    Y[:30] += 4
    X = np.vstack([rng.standard_normal((1500, 20)) * 1.3, Y[:60], Y[:60] + 1e-9])
    return Y, X


@pytest.mark.parametrize("method", ["largest", "mean", "median"])
@pytest.mark.parametrize("features", [5, 20])
def test_knn_equals_pyod_with_an_exact_search(continuous, method: str, features: int) -> None:
    Y, X = continuous[0][:, :features], continuous[1][:, :features]
    model = KNN(method=method, n_neighbors=6, algorithm="ball_tree").fit(Y)
    scorer = knn_scorer(model, Y)
    assert isinstance(scorer, KnnScorer)
    np.testing.assert_array_equal(scorer.decision_function(X), model.decision_function(X))


@pytest.mark.parametrize("features", [5, 20])
def test_lof_equals_pyod_and_sklearn_with_an_exact_search(continuous, features: int) -> None:
    Y, X = continuous[0][:, :features], continuous[1][:, :features]
    pyod = LOF(n_neighbors=15, algorithm="ball_tree").fit(Y)
    sk = LocalOutlierFactor(n_neighbors=15, novelty=True, algorithm="ball_tree").fit(Y)
    assert isinstance(lof_scorer(pyod, Y), LofScorer)
    np.testing.assert_array_equal(
        lof_scorer(pyod, Y).decision_function(X), pyod.decision_function(X)
    )
    np.testing.assert_array_equal(lof_scorer(sk, Y).decision_function(X), -sk.score_samples(X))


def test_pyods_brute_force_differs_only_by_its_own_rounding(continuous) -> None:
    """Above 15 features PyOD searches by brute force on |x|^2+|y|^2-2xy; the exact scores
    are within that rounding of its scores, and exact where PyOD's are not (duplicates)."""
    Y, X = continuous
    knn = KNN(method="mean").fit(Y)
    assert knn.neigh_._fit_method == "brute"
    ours, theirs = knn_scorer(knn, Y).decision_function(X), knn.decision_function(X)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-6)
    lof = LOF().fit(Y)
    np.testing.assert_allclose(
        lof_scorer(lof, Y).decision_function(X), lof.decision_function(X), rtol=1e-6
    )
    largest = KNN(n_neighbors=1).fit(Y)
    assert (knn_scorer(largest, Y).decision_function(Y[:60]) == 0).all()


@pytest.mark.parametrize("algorithm", ["ball_tree", "kd_tree", "brute"])
def test_duplicated_integer_rows_tie_and_still_give_pyods_scores(algorithm: str) -> None:
    rng = np.random.default_rng(1)
    Y = rng.integers(0, 4, size=(2000, 3)).astype(float)  # 64 cells: every row is repeated
    Y = np.vstack([Y, Y[:300]])
    X = np.vstack([rng.integers(-1, 5, size=(1500, 3)).astype(float), Y[:100], Y[:100] + 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PyOD's deprecated `algorithm`
        for method in ("largest", "mean", "median"):
            knn = KNN(method=method, n_neighbors=7, algorithm=algorithm).fit(Y)
            got = knn_scorer(knn, Y).decision_function(X)
            np.testing.assert_array_equal(got, knn.decision_function(X))
    lof = LOF(n_neighbors=25, algorithm=algorithm).fit(Y)
    np.testing.assert_array_equal(lof_scorer(lof, Y).decision_function(X), lof.decision_function(X))


@pytest.mark.parametrize("algorithm", ["kd_tree", "brute"])
def test_lof_equals_pyod_where_distinct_rows_tie_at_the_kth_distance(algorithm: str) -> None:
    """Integer data in 20 dimensions: many distinct training rows at the same distance. KNN
    does not care which are taken; LOF does, and scikit-learn takes the ones its search meets
    first: ADP's neighbours are the same but for such ties, and the tied rows are scored by
    scikit-learn's search, so every score equals PyOD's."""
    rng = np.random.default_rng(2)
    Y = rng.integers(0, 3, size=(1500, 20)).astype(float)
    X = rng.integers(-1, 4, size=(800, 20)).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PyOD's deprecated `algorithm`
        lof = LOF(n_neighbors=10, algorithm=algorithm).fit(Y)  # brute: exact on integers
        knn = KNN(n_neighbors=10, method="mean", algorithm=algorithm).fit(Y)
    k = lof.n_neighbors_
    scorer = lof_scorer(lof, Y)
    distances, indices = lof.detector_.kneighbors(X, n_neighbors=k + 1)
    tied = distances[:, k - 1] == distances[:, k]
    assert 0.2 < tied.mean() < 0.9  # both cases are exercised
    our_distances, our_indices = scorer.search.kneighbors(X, k)
    np.testing.assert_array_equal(our_distances, distances[:, :k])
    np.testing.assert_array_equal(
        np.sort(our_indices[~tied], axis=1), np.sort(indices[~tied, :k], axis=1)
    )
    np.testing.assert_array_equal(scorer.decision_function(X), lof.decision_function(X))
    np.testing.assert_array_equal(knn_scorer(knn, Y).decision_function(X), knn.decision_function(X))


def test_other_metrics_keep_pyods_scorer(continuous) -> None:
    Y = continuous[0][:300, :4]
    assert isinstance(knn_scorer(KNN(metric="manhattan").fit(Y), Y), PyODScorer)
    assert isinstance(lof_scorer(LOF(p=1).fit(Y), Y), PyODScorer)
    sk = LocalOutlierFactor(novelty=True, metric="chebyshev").fit(Y)
    assert isinstance(lof_scorer(sk, Y), NegatedSklearnScorer)


@pytest.mark.parametrize("name", ["knn", "avg_knn", "median_knn", "lof", "sklearn_lof"])
def test_registered_detectors_use_the_exact_scorer_whatever_the_batch(continuous, name) -> None:
    Y, X = continuous
    result = fitting.fit_matrix(detector_info(name), {}, 0.1, Y[:1500])
    assert isinstance(result.scorer, KnnScorer | LofScorer)
    whole = result.scorer.decision_function(X)
    parts = [result.scorer.decision_function(X[i : i + 97]) for i in range(0, len(X), 97)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_cof_and_sod_find_new_rows_neighbours_as_their_trees_do(continuous) -> None:
    """ADP's COF and SOD search new rows' neighbours with the exact blocked search: on
    continuous data (no ties) the same neighbours, in the same order, as their trees."""
    Y, X = continuous[0][:800, :6], continuous[1][:400, :6]
    cof = COF(n_neighbors=12).fit(Y)
    tree = cof.tree_.kneighbors(X, return_distance=False)
    expected = cof._cof(cof._chaining_distances(X, tree), tree)
    np.testing.assert_array_equal(cof.decision_function(X), expected)
    sod = SOD().fit(Y)
    tree = sod.tree_.kneighbors(X, return_distance=False)
    expected = sod._scores(X, tree, exclude_self=False)
    np.testing.assert_array_equal(sod.decision_function(X), expected)

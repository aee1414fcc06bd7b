"""The exact blocked neighbour search finds scikit-learn's neighbours at scikit-learn's
distances, ties included, whatever the batch."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import BallTree, KDTree

from adp.detect import neighbor_search
from adp.detect.neighbor_search import ExactNeighbors
from adp.errors import DataError, DetectorError


def _by_distance_then_index(X: np.ndarray, Y: np.ndarray, k: int) -> np.ndarray:
    """The k nearest by (distance, index) for data whose distances NumPy gets exactly."""
    squared = ((X[:, None, :] - Y[None, :, :]) ** 2).sum(axis=-1)
    order = np.lexsort((np.broadcast_to(np.arange(len(Y)), squared.shape), squared), axis=1)
    return order[:, :k]


@pytest.mark.parametrize("tree", [KDTree, BallTree])
@pytest.mark.parametrize(("features", "k"), [(3, 1), (7, 5), (20, 20)])
def test_distances_and_neighbours_equal_the_trees_bit_for_bit(tree, features, k) -> None:
    rng = np.random.default_rng(features)
    Y = rng.standard_normal((3000, features)) * rng.uniform(0.1, 10, features)
    X = np.vstack([rng.standard_normal((700, features)) * 3, Y[:40]])
    distances, indices = ExactNeighbors(Y).kneighbors(X, k)
    expected_d, expected_i = tree(Y).query(X, k=k)
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(indices, expected_i)  # continuous data: no ties
    assert (distances[-40:, 0] == 0).all()  # a training row is its own nearest neighbour


def test_ties_go_to_the_lower_training_row_with_the_trees_distances() -> None:
    rng = np.random.default_rng(5)
    Y = rng.integers(0, 3, size=(1500, 6)).astype(float)  # 729 cells: every row has twins
    X = rng.integers(-1, 4, size=(500, 6)).astype(float)
    distances, indices = ExactNeighbors(Y).kneighbors(X, 9)
    np.testing.assert_array_equal(indices, _by_distance_then_index(X, Y, 9))
    np.testing.assert_array_equal(distances, KDTree(Y).query(X, k=9)[0])


def test_many_tied_rows_overflow_and_are_screened_again(monkeypatch) -> None:
    rng = np.random.default_rng(6)
    Y = np.vstack([np.ones((400, 4)), rng.standard_normal((600, 4)) + 5])
    X = np.vstack([np.ones((3, 4)), np.full((2, 4), 1.5), rng.standard_normal((20, 4)) + 5])
    monkeypatch.setattr(neighbor_search, "_QUERY_BLOCK", 4)  # blocks mixing both paths
    monkeypatch.setattr(neighbor_search, "_CANDIDATE_CELLS", 500)  # and split into passes
    distances, indices = ExactNeighbors(Y).kneighbors(X, 3)
    np.testing.assert_array_equal(indices[:5], np.tile([0, 1, 2], (5, 1)))
    np.testing.assert_array_equal(distances, KDTree(Y).query(X, k=3)[0])
    np.testing.assert_array_equal(indices, _by_distance_then_index(X, Y, 3))


def test_rows_far_outside_the_training_data_and_offset_data_are_exact() -> None:
    rng = np.random.default_rng(7)
    Y = 1e8 + rng.standard_normal((2000, 5)) * 1e-3  # a large offset, a small spread
    X = np.vstack([1e8 + rng.standard_normal((300, 5)) * 1e-3, np.full((2, 5), 1e30)])
    distances, indices = ExactNeighbors(Y).kneighbors(X, 4)
    expected_d, expected_i = KDTree(Y).query(X, k=4)
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(indices[:300], expected_i[:300])


def test_a_rows_neighbours_do_not_depend_on_the_batch() -> None:
    rng = np.random.default_rng(8)
    Y = rng.integers(0, 4, size=(5000, 8)).astype(float)
    X = np.vstack([rng.integers(0, 4, size=(900, 8)).astype(float), rng.normal(size=(300, 8))])
    search = ExactNeighbors(Y)
    whole = search.kneighbors(X, 6)
    for size in (1, 7, 333):
        parts = [search.kneighbors(X[i : i + size], 6) for i in range(0, len(X), size)]
        np.testing.assert_array_equal(np.vstack([p[0] for p in parts]), whole[0])
        np.testing.assert_array_equal(np.vstack([p[1] for p in parts]), whole[1])


def test_bad_input_is_refused_with_the_reason() -> None:
    search = ExactNeighbors(np.random.default_rng(9).normal(size=(50, 3)))
    with pytest.raises(DataError, match="3 features"):
        search.kneighbors(np.zeros((2, 4)), 2)
    with pytest.raises(DataError, match="NaN"):
        search.kneighbors(np.array([[0.0, np.nan, 1.0]]), 2)
    with pytest.raises(DetectorError, match="between 1 and the 50"):
        search.kneighbors(np.zeros((2, 3)), 51)
    with pytest.raises(DataError, match="NaN"):
        ExactNeighbors(np.array([[0.0, np.inf]]))


def test_distances_closer_than_float32_resolves_are_ranked_exactly() -> None:
    rng = np.random.default_rng(10)
    centre = rng.standard_normal(6) * 4
    directions = rng.standard_normal((300, 6))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = 1.0 + rng.permutation(300) * 1e-10  # float32 rounding scrambles their order
    Y = np.vstack([centre + radii[:, None] * directions, rng.standard_normal((700, 6))])
    X = centre[None, :]
    distances, indices = ExactNeighbors(Y).kneighbors(X, 5)
    expected_d, expected_i = KDTree(Y).query(X, k=5)
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(indices[0], np.argsort(radii)[:5])

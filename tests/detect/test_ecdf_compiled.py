"""The compiled ECOD/COPOD scorer against the NumPy reference: random data, ties, bucket edges,
values outside the training range, missing values, tiny inputs, dtypes and layouts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.stats import skew

from adp.detect import ecdf
from adp.detect.ecdf import FrozenEcdfScorer

METHODS = ["ecod", "copod"]

# scipy's skew of the constant columns, of a column with an infinity, of one near 1e308
pytestmark = [
    pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
]


def _reference(X_train: np.ndarray, X: np.ndarray, method: str) -> np.ndarray:
    """The pre-compiled implementation, verbatim: per-feature terms (rows x features)."""
    X_train = np.asarray(X_train, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    sorted_train = np.sort(X_train, axis=0)
    n = X_train.shape[0]
    s = np.sign(np.nan_to_num(skew(X_train, axis=0)))
    floor = 1.0 / (n + 1)
    u_left = np.empty_like(X)
    u_right = np.empty_like(X)
    for j in range(X.shape[1]):
        column = sorted_train[:, j]
        below_or_equal = np.searchsorted(column, X[:, j], side="right")
        above_or_equal = n - np.searchsorted(column, X[:, j], side="left")
        u_left[:, j] = np.maximum(below_or_equal / n, floor)
        u_right[:, j] = np.maximum(above_or_equal / n, floor)
    u_left, u_right = -np.log(u_left), -np.log(u_right)
    u_skew = u_left * -1 * np.sign(s - 1) + u_right * np.sign(s + 1)
    if method == "ecod":
        return np.maximum(u_skew, np.maximum(u_left, u_right))
    return np.maximum(u_skew, (u_left + u_right) / 2)


def _check(X_train: np.ndarray, X: np.ndarray, method: str) -> FrozenEcdfScorer:
    scorer = FrozenEcdfScorer(X_train, method)  # type: ignore[arg-type]
    assert scorer._compiled
    expected = _reference(X_train, X, method)
    np.testing.assert_array_equal(scorer.dimension_scores(X), expected)
    np.testing.assert_allclose(
        scorer.decision_function(X), expected.sum(axis=1), rtol=1e-12, atol=0
    )
    u_left, u_right = scorer.tail_log_probabilities(X)
    ref_left, ref_right = scorer.reference_tail_log_probabilities(X)
    np.testing.assert_array_equal(u_left, ref_left)
    np.testing.assert_array_equal(u_right, ref_right)
    np.testing.assert_array_equal(scorer.reference_dimension_scores(X), expected)
    return scorer


def _mixed_train(rng: np.random.Generator, n: int) -> np.ndarray:
    """Right-skewed, left-skewed and symmetric columns, and a constant one."""
    return np.column_stack(
        [
            rng.normal(size=n),
            rng.exponential(size=n),
            -rng.lognormal(size=n),
            np.r_[rng.normal(size=n // 2), -rng.normal(size=n - n // 2)] * 0 + 1.5,
            rng.standard_t(2, size=n) * 1e3,
        ]
    )


@pytest.mark.parametrize("method", METHODS)
def test_random_data_matches_reference(method: str) -> None:
    rng = np.random.default_rng(0)
    X_train = _mixed_train(rng, 3000)
    X = np.vstack([_mixed_train(rng, 2000) * rng.uniform(0.5, 2, size=5), X_train[:500]])
    _check(X_train, X, method)


@pytest.mark.parametrize("method", METHODS)
def test_training_rows_match_pyod(method: str) -> None:
    from pyod.models.copod import COPOD
    from pyod.models.ecod import ECOD

    rng = np.random.default_rng(1)
    X_train = _mixed_train(rng, 700)
    reference = (ECOD() if method == "ecod" else COPOD()).fit(X_train)
    scorer = _check(X_train, X_train, method)
    np.testing.assert_allclose(
        scorer.decision_function(X_train), reference.decision_scores_, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("method", METHODS)
def test_heavy_ties(method: str) -> None:
    rng = np.random.default_rng(2)
    n = 4000
    X_train = np.column_stack(
        [
            rng.integers(0, 5, size=n),  # few distinct values, long runs
            rng.poisson(0.3, size=n),  # mostly zeros: the minimum is a long run
            np.full(n, 7.0),  # constant
            np.r_[np.zeros(n - 3), [1.0, 2.0, 1e6]],  # one far value: most buckets empty
            np.round(rng.normal(size=n), 1),
        ]
    ).astype(np.float64)
    X = np.column_stack(
        [
            rng.integers(-1, 7, size=3000),
            rng.integers(-1, 4, size=3000),
            rng.choice([6.0, 7.0, 8.0], size=3000),
            rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 1e6, 2e6], size=3000),
            np.round(rng.normal(size=3000) * 1.2, 1),
        ]
    ).astype(np.float64)
    _check(X_train, np.vstack([X, X_train[:300]]), method)


def _linear_maps_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the index use buckets of equal width, whatever the column."""
    candidates = ecdf._bucket_maps
    monkeypatch.setattr(
        ecdf, "_bucket_maps", lambda col, nb: [m for m in candidates(col, nb) if not m[1]]
    )


@pytest.mark.parametrize("method", METHODS)
def test_values_on_and_next_to_bucket_edges(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training values (runs of ties) and cells on the edges of equal-width buckets, and one
    float either side, where ``(x - lo) * nb / span`` rounds either way."""
    _linear_maps_only(monkeypatch)
    rng = np.random.default_rng(3)
    n = 2000
    nb = ecdf.n_buckets(n)
    train_columns, columns = [], []
    for lo, hi in [(-3.3, 2.9), (0.1, 0.7), (-1e-3, 1e9)]:
        edges = lo + (hi - lo) * (np.arange(nb + 1) / nb)
        # runs of ties longer than the kernel's scan of a bucket's first values
        on_edges = np.repeat(rng.choice(edges[1:-1], size=n // 40, replace=False), 12)
        column = np.r_[lo, hi, on_edges, rng.uniform(lo, hi, size=n - 2 - on_edges.size)]
        train_columns.append(column)
        candidates = np.concatenate(
            [
                edges,
                np.nextafter(edges, -np.inf),
                np.nextafter(edges, np.inf),
                column,  # the training values themselves: ties at bucket starts
                np.nextafter(column, np.inf),
                np.nextafter(column, -np.inf),
            ]
        )
        columns.append(rng.permutation(candidates))
    X_train = np.column_stack(train_columns)
    size = min(len(c) for c in columns)
    scorer = _check(X_train, np.column_stack([c[:size] for c in columns]), method)
    assert scorer.bucket_maps_[:, 0].tolist() == [nb] * 3
    assert not scorer.bucket_maps_[:, 1].any()


@pytest.mark.parametrize("method", METHODS)
def test_log_buckets_on_heavy_tails(method: str) -> None:
    """Heavy tails (one- and two-sided, shifted, tiny, with ties) get log-like buckets."""
    rng = np.random.default_rng(12)
    n = 3000
    X_train = np.column_stack(
        [
            rng.lognormal(0, 3, size=n),
            -rng.lognormal(0, 2, size=n) + 1e4,
            rng.standard_cauchy(size=n),
            np.round(rng.pareto(1.0, size=n), 2),
            np.r_[rng.standard_cauchy(size=n - 10) * 1e-300, [5e-324] * 10],
            np.r_[rng.standard_cauchy(size=n - 2) * 1e300, [-1.7e308, 1.7e308]],  # span: inf
        ]
    )
    scorer = FrozenEcdfScorer(X_train, method)  # type: ignore[arg-type]
    assert scorer.bucket_maps_[:, 1].all()
    columns = []
    for j in range(X_train.shape[1]):
        column = X_train[:, j]
        near = np.r_[column, rng.lognormal(0, 4, size=n) * np.sign(column), 0.0, -0.0]
        columns.append(
            rng.permutation(np.r_[near, np.nextafter(near, np.inf), np.nextafter(near, -np.inf)])
        )
    _check(X_train, np.column_stack(columns), method)


@pytest.mark.parametrize("method", METHODS)
def test_wrong_buckets_are_recounted(method: str) -> None:
    """The kernels check every bucket against the sorted column: with the maps shifted after
    indexing, most cells land in a wrong bucket and must still count exactly."""
    rng = np.random.default_rng(13)
    X_train = np.column_stack(
        [rng.normal(size=2000), rng.lognormal(0, 2, size=2000), rng.integers(0, 9, size=2000)]
    )
    ends = np.sort(X_train, axis=0)[[0, 1, -2, -1]]
    between = np.vstack([np.nextafter(ends, -np.inf), ends, np.nextafter(ends, np.inf)])
    X = np.vstack([rng.normal(size=(500, 3)) * [1, 30, 5], X_train[:500], between])
    scorer = FrozenEcdfScorer(X_train, method)  # type: ignore[arg-type]
    assert scorer.bucket_maps_[:, 1].tolist() == [0, 1, 0]
    for shift in (-3.5, -1.0, 1.0, 2.5, 1e6):
        scorer.bucket_maps_[:, 2] = FrozenEcdfScorer(X_train, method).bucket_maps_[:, 2] + (
            shift / scorer.bucket_maps_[:, 3]
        )
        expected = _reference(X_train, X, method)
        np.testing.assert_array_equal(scorer.dimension_scores(X), expected)
        np.testing.assert_allclose(scorer.decision_function(X), expected.sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_values_outside_the_training_range(method: str) -> None:
    rng = np.random.default_rng(4)
    X_train = _mixed_train(rng, 500)
    lo, hi = X_train.min(axis=0), X_train.max(axis=0)
    X = np.vstack(
        [
            lo,
            hi,
            lo - 1,
            hi + 1,
            np.nextafter(lo, -np.inf),
            np.nextafter(hi, np.inf),
            np.nextafter(lo, np.inf),
            np.nextafter(hi, -np.inf),
            np.full(5, np.inf),
            np.full(5, -np.inf),
            np.full(5, 1e308),
            np.full(5, -1e308),
        ]
    )
    _check(X_train, X, method)


@pytest.mark.parametrize("method", METHODS)
def test_missing_values_score_as_the_reference(method: str) -> None:
    rng = np.random.default_rng(5)
    X_train = _mixed_train(rng, 400)
    X = rng.normal(size=(50, 5))
    X[::3, 1] = np.nan
    X[7, :] = np.nan
    _check(X_train, X, method)


@pytest.mark.parametrize("method", METHODS)
def test_one_row_zero_rows_and_one_training_row(method: str) -> None:
    rng = np.random.default_rng(6)
    X_train = _mixed_train(rng, 300)
    _check(X_train, rng.normal(size=(1, 5)), method)
    scorer = _check(X_train, np.empty((0, 5)), method)
    assert scorer.decision_function(np.empty((0, 5))).shape == (0,)
    assert scorer.dimension_scores(np.empty((0, 5))).shape == (0, 5)
    _check(X_train[:1], rng.normal(size=(20, 5)), method)
    _check(X_train[:2], np.vstack([X_train[:2], rng.normal(size=(20, 5))]), method)


@pytest.mark.parametrize("method", METHODS)
def test_dtypes_and_layouts(method: str) -> None:
    rng = np.random.default_rng(7)
    X_train = _mixed_train(rng, 1000).astype(np.float32)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    scorer = _check(X_train, X, method)
    expected = scorer.decision_function(X)
    X64 = X.astype(np.float64)
    for variant in (X64, np.asfortranarray(X64), np.repeat(X64, 2, axis=0)[::2], X.tolist()):
        np.testing.assert_array_equal(scorer.decision_function(variant), expected)
    with pytest.raises(ValueError, match="5 columns"):
        scorer.decision_function(X[:, :4])
    with pytest.raises(ValueError, match="2-D"):
        scorer.decision_function(X[0])


@pytest.mark.parametrize("method", METHODS)
def test_large_buckets_and_several_chunks(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few buckets (bisection inside them) and small chunks (several kernel passes)."""
    monkeypatch.setattr(ecdf, "MAX_BUCKETS", 3)
    monkeypatch.setattr(ecdf, "CHUNK_CELLS", 1)
    monkeypatch.setattr(ecdf, "_CHUNK_ROWS", (37, 37))
    rng = np.random.default_rng(8)
    X_train = np.column_stack([_mixed_train(rng, 900), rng.integers(0, 50, size=900)])
    X = np.vstack([np.column_stack([_mixed_train(rng, 500), rng.integers(-2, 52, size=500)])])
    scorer = _check(X_train, X, method)
    assert scorer.bucket_maps_[:, 0].max() == 3


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_training_values_use_the_reference(method: str) -> None:
    rng = np.random.default_rng(9)
    X_train = _mixed_train(rng, 200)
    X_train[3, 0] = np.inf
    scorer = FrozenEcdfScorer(X_train, method)  # type: ignore[arg-type]
    assert not scorer._compiled
    X = rng.normal(size=(30, 5))
    np.testing.assert_array_equal(scorer.dimension_scores(X), _reference(X_train, X, method))
    np.testing.assert_allclose(
        scorer.decision_function(X), _reference(X_train, X, method).sum(axis=1), rtol=1e-12
    )


def test_pickle_ships_only_the_sorted_sample_and_old_pickles_load() -> None:
    rng = np.random.default_rng(10)
    X_train = _mixed_train(rng, 5000)
    scorer = FrozenEcdfScorer(X_train, "ecod")
    data = pickle.dumps(scorer, protocol=pickle.HIGHEST_PROTOCOL)
    assert len(data) < X_train.nbytes + 4096
    copy = pickle.loads(data)
    X = rng.normal(size=(200, 5))
    np.testing.assert_array_equal(copy.decision_function(X), scorer.decision_function(X))
    np.testing.assert_array_equal(copy.sorted_train_, np.sort(X_train, axis=0))

    # A scorer pickled before the compiled path: sorted_train_ as rows x features
    old = FrozenEcdfScorer.__new__(FrozenEcdfScorer)
    old.__setstate__(
        {
            "method": "copod",
            "sorted_train_": np.sort(X_train, axis=0),
            "n_train_": len(X_train),
            "skew_sign_": np.sign(np.nan_to_num(skew(X_train, axis=0))),
        }
    )
    np.testing.assert_array_equal(old.dimension_scores(X), _reference(X_train, X, "copod"))

"""The compiled HBOS scorer equals PyOD's ``decision_function``."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from pyod.models.hbos import HBOS

import adp
from adp.detect.hbos import HbosScorer


def _same(model: HBOS, X: np.ndarray) -> None:
    expected = model.decision_function(X)
    got = HbosScorer(model).decision_function(X)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_equal_on_continuous_data_inside_and_outside_the_training_range() -> None:
    rng = np.random.default_rng(0)
    model = HBOS(n_bins=10).fit(rng.normal(size=(5000, 6)))
    _same(model, rng.normal(size=(20_000, 6)) * 3)  # many cells beyond the outer edges


def test_equal_on_bin_edges_and_within_the_tolerance_band() -> None:
    rng = np.random.default_rng(1)
    model = HBOS(n_bins=7, tol=0.3).fit(rng.uniform(-2, 5, size=(3000, 3)))
    edges = model.bin_edges_
    width = edges[1] - edges[0]
    cells = [edges, edges + 1e-12, edges - 1e-12]  # every edge, and just either side
    cells += [edges[:1] - width * f for f in (0.1, 0.29999, 0.3, 0.31, 2.0)]
    cells += [edges[-1:] + width * f for f in (0.1, 0.29999, 0.3, 0.31, 2.0)]
    _same(model, np.vstack(cells))


def test_equal_on_integer_valued_and_constant_features() -> None:
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, size=(4000, 5)).astype(float)
    X[:, 4] = 7.0  # constant: np.histogram spans [6.5, 7.5]
    model = HBOS(n_bins=5, alpha=0.05).fit(X)
    _same(model, np.vstack([X, X + 0.5, X - 1]))


def test_auto_bins_fall_back_to_pyod_and_bad_input_is_refused() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2000, 4))
    auto = HBOS(n_bins="auto").fit(X)
    scorer = HbosScorer(auto)
    assert not scorer.compiled
    np.testing.assert_array_equal(scorer.decision_function(X[:50]), auto.decision_function(X[:50]))
    fixed = HbosScorer(HBOS().fit(X))
    assert fixed.decision_function(np.empty((0, 4))).shape == (0,)
    with pytest.raises(ValueError, match="4 features"):
        fixed.decision_function(X[:, :3])
    bad = X[:10].copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fixed.decision_function(bad)


def test_the_registered_detector_scores_with_it() -> None:
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.normal(size=(3000, 4)), columns=list("abcd"))
    ddf = dd.from_pandas(frame, npartitions=3)
    with dask.config.set(scheduler="sync"):
        det = adp.create_detector("hbos").fit(ddf)
        scores = det.decision_function(ddf).compute().to_numpy()
    assert isinstance(det.scorer_, HbosScorer) and det.scorer_.compiled
    reference = HBOS().fit(frame.to_numpy())
    np.testing.assert_allclose(scores, reference.decision_function(frame.to_numpy()), atol=1e-12)


@pytest.mark.parametrize(
    ("n_bins", "alpha", "tol"), [(10, 0.1, 0.5), (4, 0.05, 0.2), ("auto", 0.1, 0.5)]
)
def test_adps_fit_reaches_pyods_fitted_state(n_bins, alpha, tol) -> None:
    from adp.detect.hbos import fit_pyod_hbos

    rng = np.random.default_rng(4)
    X = np.column_stack([rng.normal(size=3000), rng.integers(0, 5, 3000), np.full(3000, 2.0)])
    expected = HBOS(n_bins=n_bins, alpha=alpha, tol=tol, contamination=0.05).fit(X)
    got = fit_pyod_hbos(HBOS(n_bins=n_bins, alpha=alpha, tol=tol, contamination=0.05), X)
    for a, b in zip(got.hist_, expected.hist_, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(got.bin_edges_, expected.bin_edges_, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(got.decision_scores_, expected.decision_scores_, rtol=0, atol=1e-12)
    assert got.threshold_ == pytest.approx(expected.threshold_, abs=1e-12)
    np.testing.assert_array_equal(got.labels_, expected.labels_)
    np.testing.assert_allclose(got.decision_function(X), expected.decision_function(X), atol=0)


def test_a_fit_compiles_none_of_pyods_numba_functions() -> None:
    """PyOD compiles its scoring function in every new process (4.9 s here); ADP's fit
    scores the training rows with its own kernel, which numba caches on disk."""
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from adp.detect.fitting import fit_matrix\n"
        "from adp.detect.registry import detector_info\n"
        "import pyod.models.hbos as h\n"
        "X = np.random.default_rng(0).normal(size=(2000, 4))\n"
        "fit_matrix(detector_info('hbos'), {}, 0.1, X)\n"
        "print(len(h._calculate_outlier_scores.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"

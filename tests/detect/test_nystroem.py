"""The approximate one-class SVM ranks rows as PyOD's exact OCSVM does, nearly."""

from __future__ import annotations

import numpy as np
import pytest
from pyod.models.ocsvm import OCSVM
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from adp.detect.nystroem import NystroemOCSVM
from adp.detect.registry import detector_info
from adp.errors import DetectorError


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal(size=(1500, 5)), rng.normal(size=(1500, 5)) + 4])
    new = np.vstack([rng.normal(size=(400, 5)) + rng.choice([0, 4], 400)[:, None]])
    outliers = rng.uniform(-6, 10, size=(60, 5))
    labels = np.r_[np.zeros(len(new)), np.ones(len(outliers))]
    return X, np.vstack([new, outliers]), labels


def test_scores_track_the_exact_one_class_svm(data) -> None:
    X, scored, labels = data
    exact = OCSVM().fit(X).decision_function(scored)
    approx = NystroemOCSVM().fit(X).decision_function(scored)
    assert spearmanr(exact, approx).statistic > 0.9
    assert abs(roc_auc_score(labels, approx) - roc_auc_score(labels, exact)) < 0.02


def test_registered_deterministic_and_row_wise(data) -> None:
    X, scored, _ = data
    built = detector_info("ocsvm_nystroem").build({"n_components": 100}, 0.05)
    assert isinstance(built, NystroemOCSVM) and built.n_components == 100
    first = NystroemOCSVM(n_components=100).fit(X)
    second = NystroemOCSVM(n_components=100).fit(X)
    whole = first.decision_function(scored)
    np.testing.assert_array_equal(whole, second.decision_function(scored))
    parts = [first.decision_function(scored[i : i + 37]) for i in range(0, len(scored), 37)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-12, atol=1e-12)


def test_a_bad_gamma_is_refused_with_the_choices() -> None:
    with pytest.raises(DetectorError, match="'auto', 'scale' or a positive number"):
        NystroemOCSVM(gamma=-1.0).fit(np.zeros((20, 2)))

"""An approximate one-class SVM: a Nystroem RBF feature map and a linear one-class SVM.

PyOD's ``OCSVM`` (libsvm) fits in quadratic to cubic time and scores each row against every
support vector (about half the fitted rows with ``nu=0.5``). :class:`NystroemOCSVM` maps rows
with scikit-learn's ``Nystroem`` (``n_components`` fitted rows as landmarks) and fits
``SGDOneClassSVM`` on the mapped rows: fitting is linear in rows and scoring costs
``O(m * n_components * d)`` whatever the fit size. It approximates the exact detector, so it
is registered under its own name (``ocsvm_nystroem``); ``adp bench kernels --kernel
ocsvm_nystroem`` measures its ROC-AUC against the exact one on the ODDS sets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pyod.models.base import BaseDetector
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import SGDOneClassSVM
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

from adp.errors import DetectorError


class NystroemOCSVM(BaseDetector):
    """One-class SVM on a Nystroem approximation of the RBF kernel.

    Parameters
    ----------
    contamination : float
        Share of outliers in the training data (PyOD's convention).
    nu : float
        Upper bound on the share of training errors (as in ``OCSVM``).
    gamma : float or {"auto", "scale"}
        RBF coefficient: ``"auto"`` is ``1 / n_features`` (PyOD's ``OCSVM`` default),
        ``"scale"`` is ``1 / (n_features * X.var())``.
    n_components : int
        Landmark rows of the Nystroem map (at most the fitted rows).
    max_iter : int
        Passes of the stochastic gradient descent over the mapped rows.
    tol : float
        Stopping criterion of the descent.
    random_state : int or None
        Seeds the landmarks and the descent.

    Attributes
    ----------
    map_ : sklearn.kernel_approximation.Nystroem
        The fitted feature map.
    svm_ : sklearn.linear_model.SGDOneClassSVM
        The linear one-class SVM on the mapped rows.
    """

    def __init__(
        self,
        contamination: float = 0.1,
        nu: float = 0.5,
        gamma: float | str = "auto",
        n_components: int = 300,
        max_iter: int = 50,
        tol: float = 1e-4,
        random_state: int | None = 0,
    ) -> None:
        super().__init__(contamination=contamination)
        self.nu = nu
        self.gamma = gamma
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _gamma(self, X: np.ndarray) -> float:
        if self.gamma == "auto":
            return 1.0 / X.shape[1]
        if self.gamma == "scale":
            variance = float(X.var())
            return 1.0 / (X.shape[1] * variance) if variance > 0 else 1.0
        if isinstance(self.gamma, str) or not float(self.gamma) > 0:
            raise DetectorError(
                f"gamma must be 'auto', 'scale' or a positive number, got {self.gamma!r}"
            )
        return float(self.gamma)

    def fit(self, X: Any, y: Any = None) -> NystroemOCSVM:
        """Fit the feature map and the linear one-class SVM on ``X``."""
        X = check_array(X, dtype=np.float64)
        self._set_n_classes(y)
        self.gamma_ = self._gamma(X)
        self.map_ = Nystroem(
            kernel="rbf",
            gamma=self.gamma_,
            n_components=min(int(self.n_components), X.shape[0]),
            random_state=self.random_state,
        ).fit(X)
        self.svm_ = SGDOneClassSVM(
            nu=self.nu, max_iter=self.max_iter, tol=self.tol, random_state=self.random_state
        ).fit(self.map_.transform(X))
        self.decision_scores_ = self.decision_function(X)
        self._process_decision_scores()
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Distance outside the approximate boundary (higher is more anomalous)."""
        check_is_fitted(self, ["map_", "svm_"])
        X = check_array(X, dtype=np.float64)
        return -np.asarray(self.svm_.decision_function(self.map_.transform(X)), dtype=np.float64)


__all__ = ["NystroemOCSVM"]

"""Rotation-based outlier detection (ROD) with the MAD scale frozen at fit time.

PyOD's ``ROD.decision_function(X)`` keeps the geometric medians, the median costs and the
angle scalers learned at fit time, but divides each row's cost deviation by the median
deviation *of the batch* (``np.median(diff)`` in ``pyod.models.rod.mad``): a row's score
depends on the rows scored with it. :class:`FrozenRodScorer` divides by the median deviation
of the training rows instead, so a row's score depends only on the fitted model and the row,
and the training rows get exactly PyOD's ``decision_scores_``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from pyod.models.rod import scale_angles


def _costs(x: np.ndarray, gm: Any, scaler1: Any, scaler2: Any) -> np.ndarray:
    """Rotation costs of the rows of a 3-D subspace (``pyod.models.rod.rod_3D``'s)."""
    gm = np.asarray(gm, dtype=np.float64)
    norm_ = np.linalg.norm(gm)
    centred = x - gm
    v_norm = np.linalg.norm(centred, axis=1)
    costs = np.zeros(v_norm.shape[0])
    if norm_ == 0:
        gammas, _, _ = scale_angles(
            np.full(v_norm.shape[0], np.pi / 2.0), scaler1=scaler1, scaler2=scaler2
        )
        return np.power(v_norm, 3) * np.cos(gammas) * np.square(np.sin(gammas))
    denominator = v_norm * norm_
    valid = denominator > 0
    if valid.any():
        cosines = np.clip(np.dot(centred[valid], gm) / denominator[valid], -1, 1)
        gammas, _, _ = scale_angles(np.arccos(cosines), scaler1=scaler1, scaler2=scaler2)
        costs[valid] = np.power(v_norm[valid], 3) * np.cos(gammas) * np.square(np.sin(gammas))
    return costs


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class FrozenRodScorer:
    """Score rows with a fitted PyOD ``ROD``, dividing by the training rows' MAD.

    Parameters
    ----------
    estimator : pyod.models.rod.ROD
        The fitted detector (its medians and scalers are reused).
    X_train : ndarray of shape (n_samples, n_features)
        The rows it was fitted on; their median cost deviations become the fixed scales.
    """

    def __init__(self, estimator: Any, X_train: np.ndarray) -> None:
        self.n_features_ = int(X_train.shape[1])
        self.three_d_ = self.n_features_ <= 3
        if self.three_d_:
            self.gm_ = [estimator.gm_]
            self.median_ = [estimator.median_]
            self.scaler1_ = [estimator.angles_scaler1_]
            self.scaler2_ = [estimator.angles_scaler2_]
            self.data_scaler_: Any = None
        else:
            self.gm_ = list(estimator.gm_)
            self.median_ = list(estimator.median_)
            self.scaler1_ = list(estimator.angles_scaler1_)
            self.scaler2_ = list(estimator.angles_scaler2_)
            self.data_scaler_ = estimator.data_scaler_
        self.scale_ = np.array(
            [
                np.median(np.abs(costs - median))
                for costs, median in zip(self._all_costs(X_train), self.median_, strict=True)
            ]
        )

    def _subspaces(self, X: np.ndarray) -> list[np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if self.three_d_:
            pad = np.zeros((X.shape[0], 3 - X.shape[1]))
            return [np.hstack((X, pad))]
        X = self.data_scaler_.transform(X)
        return [X[:, list(c)] for c in combinations(range(X.shape[1]), 3)]

    def _all_costs(self, X: np.ndarray) -> list[np.ndarray]:
        return [
            _costs(sub, gm, s1, s2)
            for sub, gm, s1, s2 in zip(
                self._subspaces(X), self.gm_, self.scaler1_, self.scaler2_, strict=True
            )
        ]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """ROD scores of ``X`` (higher is more anomalous), independent of the batch."""
        per_subspace = []
        for costs, median, scale in zip(self._all_costs(X), self.median_, self.scale_, strict=True):
            with np.errstate(divide="ignore", invalid="ignore"):
                z = 0.6745 * np.abs(costs - median) / scale
            per_subspace.append(z if self.three_d_ else _sigmoid(np.nan_to_num(z)))
        if self.three_d_:
            return np.asarray(per_subspace[0], dtype=np.float64)
        return np.mean(np.vstack(per_subspace), axis=0)

"""The detector catalogue: the core eight, PyOD's other classic detectors, scikit-learn's
outlier detectors and PyOD's torch-based ones (the optional ``adp[deep]`` extra).

:data:`ENTRIES` lists every entry; :mod:`adp.detect.registry` registers them. Every
registered detector scores a row from the fitted model and the row alone: where PyOD's own
``decision_function`` depends on the batch, ADP registers a frozen version (``cof``, ``sod``,
``rod``; ``ecod`` and ``copod`` in the registry); the detectors that cannot be made
partition-invariant are listed in :data:`EXCLUDED` with the reason.

Costs use ``n`` for rows fitted (the sample), ``m`` for rows scored, ``d`` for features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adp.detect.entry import (
    DetectorInfo,
    copod_scorer,
    ecod_scorer,
    fit_hbos,
    fit_iforest,
    hbos_scorer,
    iforest_scorer,
    knn_scorer,
    lof_scorer,
    sklearn_scorer,
)
from adp.detect.scorers import Scorer


def _rod_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    from adp.detect.rod import FrozenRodScorer

    return FrozenRodScorer(estimator, X_train)


def _sklearn_iforest_scorer(estimator: Any, X_train: np.ndarray) -> Scorer:
    """scikit-learn ``IsolationForest``, compiled: the negated ``score_samples``."""
    from adp.detect.forest import ForestScorer

    return ForestScorer(estimator, pyod_scale=False)


_KNN_NOTE = (
    "Rows are scored with decision_function against the fitted rows: a row that was in the "
    "fit sample is its own nearest neighbour (PyOD's decision_scores_ leave it out)."
)
_EXACT_NOTE = (
    " Scored by ADP's exact blocked search (adp.detect.neighbor_search): float32 BLAS "
    "screening with a rigorous error margin, then exact float64 distances, equal bit for bit "
    "to scikit-learn's tree distances; ties at the k-th distance go to the lower training "
    "row. PyOD's own brute-force search (above 15 features) rounds |x|^2+|y|^2-2xy, so its "
    "scores differ from these by that rounding."
)
_NEIGHBOUR_COST = "O(m * n * d) on BLAS, exact"
_OCSVM_NOTE = (
    "Scoring evaluates the RBF kernel against every support vector, 50-75 s per million rows "
    "per 1000 support vectors on one core at 20 features (adp bench kernels --kernel "
    "ocsvm_nystroem: 182 s per million rows with 2508 support vectors from a 5k-row fit). "
    "PyOD's default nu=0.5 keeps about half the fitted rows: a 20k-row fit costs 8-12 min "
    "per million rows, the default 100k-row sample about 1 h (extrapolated, linear in "
    "support vectors) after a fit of hours (quadratic to cubic). Fit on a smaller "
    "sample_rows, or use the approximate ocsvm_nystroem."
)
_FROZEN_NOTE = (
    "ADP's own implementation: neighbours are searched among the training rows only, so a "
    "row's score does not depend on the batch (PyOD's searches the scored batch)."
)

_CORE = [
    DetectorInfo(
        "isolation_forest",
        "pyod.models.iforest:IForest",
        "Isolation forest: random axis-parallel splits isolate outliers in few steps.",
        fit_cost="O(t * s log s), s = max_samples",
        score_cost="O(m * t * log s)",
        deterministic=False,
        scorer=iforest_scorer,
        fitter=fit_iforest,
        aliases=("iforest",),
        defaults={"n_jobs": 1},
        strategies=("sample", "distributed", "bagging"),
    ),
    DetectorInfo(
        "ecod",
        "pyod.models.ecod:ECOD",
        "Empirical-CDF outlier detection: summed tail probabilities per feature.",
        fit_cost="O(n log n * d)",
        score_cost="O(m * d * log n)",
        deterministic=True,
        scorer=ecod_scorer,
        notes="Scored against per-feature ECDFs frozen at fit (PyOD re-fits on each batch).",
    ),
    DetectorInfo(
        "copod",
        "pyod.models.copod:COPOD",
        "Copula-based outlier detection with empirical copulas.",
        fit_cost="O(n log n * d)",
        score_cost="O(m * d * log n)",
        deterministic=True,
        scorer=copod_scorer,
        notes="Scored against per-feature ECDFs frozen at fit (PyOD re-fits on each batch).",
    ),
    DetectorInfo(
        "hbos",
        "pyod.models.hbos:HBOS",
        "Histogram-based outlier score: per-feature histogram densities.",
        fit_cost="O(n * d)",
        score_cost="O(m * d)",
        deterministic=True,
        scorer=hbos_scorer,
        fitter=fit_hbos,
        notes="Scored in one compiled pass (adp.detect.hbos); equal to PyOD's to 1e-12.",
    ),
    DetectorInfo(
        "lof",
        "pyod.models.lof:LOF",
        "Local outlier factor: local density relative to the k nearest neighbours.",
        fit_cost="O(n^2 * d) brute (trees if d <= 15)",
        score_cost=_NEIGHBOUR_COST,
        deterministic=True,
        scorer=lof_scorer,
        notes=_KNN_NOTE + _EXACT_NOTE,
    ),
    DetectorInfo(
        "knn",
        "pyod.models.knn:KNN",
        "Distance to the k-th nearest training neighbour.",
        fit_cost="O(n^2 * d) brute (trees if d <= 15)",
        score_cost=_NEIGHBOUR_COST,
        deterministic=True,
        scorer=knn_scorer,
        notes=_KNN_NOTE + _EXACT_NOTE,
    ),
    DetectorInfo(
        "one_class_svm",
        "pyod.models.ocsvm:OCSVM",
        "One-class SVM: a kernel boundary around the normal data.",
        fit_cost="O(n^2 * d) to O(n^3)",
        score_cost="O(m * n_sv * d): ~1 h per 1M rows at a 100k fit",
        deterministic=True,
        aliases=("ocsvm",),
        notes=_OCSVM_NOTE,
    ),
    DetectorInfo(
        "ocsvm_nystroem",
        "adp.detect.nystroem:NystroemOCSVM",
        "Approximate one-class SVM: Nystroem RBF features and a linear one-class SVM.",
        fit_cost="O(n * c * (d + c) + c^3), c = n_components",
        score_cost="O(m * c * (d + c))",
        deterministic=True,
        notes=(
            "An approximation of one_class_svm (same kernel and nu); its ROC-AUC against the "
            "exact detector on the ODDS sets: adp bench kernels --kernel ocsvm_nystroem."
        ),
    ),
    DetectorInfo(
        "pca",
        "pyod.models.pca:PCA",
        "Principal component analysis: weighted distance in the minor components.",
        fit_cost="O(n * d^2)",
        score_cost="O(m * d^2)",
        deterministic=True,
    ),
]


_PYOD = [
    DetectorInfo(
        "mcd",
        "pyod.models.mcd:MCD",
        "Minimum covariance determinant: robust Mahalanobis distance.",
        fit_cost="O(n * d^2 + d^3) per C-step: 19 s at 100k x 4",
        score_cost="O(m * d^2)",
        deterministic=False,
        notes="FastMCD's fit grows with its rows: 3.3 s on 20,000 x 4, 19 s on the default "
        "100,000 (measured); a smaller sample_rows fits faster.",
    ),
    DetectorInfo(
        "cblof",
        "pyod.models.cblof:CBLOF",
        "Cluster-based local outlier factor: distance to large k-means clusters.",
        fit_cost="O(n * k * d * iterations)",
        score_cost="O(m * k * d)",
        deterministic=False,
    ),
    DetectorInfo(
        "loda",
        "pyod.models.loda:LODA",
        "Lightweight on-line detector: histograms of sparse random projections.",
        fit_cost="O(n * c * d), c = n_random_cuts",
        score_cost="O(m * c * d)",
        deterministic=False,
    ),
    DetectorInfo(
        "inne",
        "pyod.models.inne:INNE",
        "Isolation using nearest-neighbour ensembles (hyperspheres around sampled points).",
        fit_cost="O(t * s^2 * d), s = max_samples",
        score_cost="O(m * t * s * d)",
        deterministic=False,
    ),
    DetectorInfo(
        "kde",
        "pyod.models.kde:KDE",
        "Kernel density estimate: negative log density.",
        fit_cost="O(n log n * d) (tree)",
        score_cost="O(m * n * d) worst case",
        deterministic=True,
    ),
    DetectorInfo(
        "gmm",
        "pyod.models.gmm:GMM",
        "Gaussian mixture model: negative log likelihood.",
        fit_cost="O(n * k * d^2 * iterations)",
        score_cost="O(m * k * d^2)",
        deterministic=False,
    ),
    DetectorInfo(
        "abod",
        "pyod.models.abod:ABOD",
        "Angle-based outlier detection (fast variant over k nearest neighbours).",
        fit_cost="O(n * k^2 * d)",
        score_cost="O(m * k^2 * d)",
        deterministic=True,
    ),
    DetectorInfo(
        "cof",
        "adp.detect.neighbors:COF",
        "Connectivity-based outlier factor: average chaining distance over the neighbours'.",
        fit_cost="O(n * k^2 * d)",
        score_cost="O(m * k^2 * d)",
        deterministic=True,
        notes=_FROZEN_NOTE,
    ),
    DetectorInfo(
        "sod",
        "adp.detect.neighbors:SOD",
        "Subspace outlier degree: deviation in the subspace of low reference-set variance.",
        fit_cost="O(n * k^2) sparse products",
        score_cost="O(m * k^2 + m * r * d)",
        deterministic=True,
        notes=_FROZEN_NOTE,
    ),
    DetectorInfo(
        "rod",
        "pyod.models.rod:ROD",
        "Rotation-based outlier detection over every 3-D subspace.",
        fit_cost="O(n * C(d, 3))",
        score_cost="O(m * C(d, 3))",
        deterministic=True,
        scorer=_rod_scorer,
        notes=(
            "The MAD scale of the rotation costs is the training rows' (PyOD divides by the "
            "scored batch's); training rows get PyOD's decision_scores_ exactly."
        ),
    ),
    DetectorInfo(
        "sampling",
        "pyod.models.sampling:Sampling",
        "Distance to the nearest of a random subset of the training rows.",
        fit_cost="O(s * d)",
        score_cost="O(m * s * d), s = subset_size",
        deterministic=False,
    ),
    DetectorInfo(
        "qmcd",
        "pyod.models.qmcd:QMCD",
        "Quasi-Monte Carlo discrepancy of each row against the training rows.",
        fit_cost="O(n^2 * d)",
        score_cost="O(m * n * d)",
        deterministic=True,
        max_fit_rows=20000,
    ),
    DetectorInfo(
        "kpca",
        "pyod.models.kpca:KPCA",
        "Kernel PCA reconstruction error in feature space.",
        fit_cost="O(n^2 * d + n^3) time, O(n^2) memory",
        score_cost="O(m * n * d)",
        deterministic=False,
        max_fit_rows=5000,
        notes="Fits on at most 5000 sampled rows (its kernel matrix is n x n).",
    ),
    DetectorInfo(
        "hdbscan",
        "pyod.models.hdbscan:HDBSCAN",
        "HDBSCAN GLOSH outlier scores; new rows inherit their neighbours' scores.",
        fit_cost="O(n log n * d) to O(n^2)",
        score_cost="O(m * k * log n)",
        deterministic=True,
    ),
    DetectorInfo(
        "mad",
        "pyod.models.mad:MAD",
        "Median absolute deviation of a single feature (univariate data only).",
        fit_cost="O(n)",
        score_cost="O(m)",
        deterministic=True,
    ),
    DetectorInfo(
        "avg_knn",
        "pyod.models.knn:KNN",
        "Mean distance to the k nearest training neighbours.",
        fit_cost="O(n^2 * d) brute (trees if d <= 15)",
        score_cost=_NEIGHBOUR_COST,
        deterministic=True,
        scorer=knn_scorer,
        fixed_params={"method": "mean"},
        notes=_KNN_NOTE + _EXACT_NOTE,
    ),
    DetectorInfo(
        "median_knn",
        "pyod.models.knn:KNN",
        "Median distance to the k nearest training neighbours.",
        fit_cost="O(n^2 * d) brute (trees if d <= 15)",
        score_cost=_NEIGHBOUR_COST,
        deterministic=True,
        scorer=knn_scorer,
        fixed_params={"method": "median"},
        notes=_KNN_NOTE + _EXACT_NOTE,
    ),
    DetectorInfo(
        "feature_bagging",
        "pyod.models.feature_bagging:FeatureBagging",
        "Feature bagging: base detectors (LOF) on random feature subsets, averaged.",
        fit_cost="t x the base detector's on n rows",
        score_cost="t x the base detector's",
        deterministic=False,
        requires=("combo",),
        extra="combo",
    ),
]

_SKLEARN = [
    DetectorInfo(
        "sklearn_isolation_forest",
        "sklearn.ensemble:IsolationForest",
        "scikit-learn's isolation forest (score: the negated score_samples).",
        fit_cost="O(t * s log s), s = max_samples",
        score_cost="O(m * t * log s)",
        deterministic=False,
        scorer=_sklearn_iforest_scorer,
        aliases=("sklearn_iforest",),
        defaults={"n_jobs": 1},
        strategies=("sample", "distributed", "bagging"),
    ),
    DetectorInfo(
        "sklearn_lof",
        "sklearn.neighbors:LocalOutlierFactor",
        "scikit-learn's local outlier factor in novelty mode (score new rows).",
        fit_cost="O(n^2 * d) brute (trees if d <= 15)",
        score_cost=_NEIGHBOUR_COST,
        deterministic=True,
        scorer=lof_scorer,
        fixed_params={"novelty": True},
        notes=_KNN_NOTE + _EXACT_NOTE,
    ),
    DetectorInfo(
        "sklearn_one_class_svm",
        "sklearn.svm:OneClassSVM",
        "scikit-learn's one-class SVM (libsvm).",
        fit_cost="O(n^2 * d) to O(n^3)",
        score_cost="O(m * n_support * d)",
        deterministic=True,
        scorer=sklearn_scorer,
        aliases=("sklearn_ocsvm",),
    ),
    DetectorInfo(
        "sklearn_sgd_one_class_svm",
        "sklearn.linear_model:SGDOneClassSVM",
        "scikit-learn's linear one-class SVM trained by SGD (linear in n).",
        fit_cost="O(n * d * epochs)",
        score_cost="O(m * d)",
        deterministic=False,
        scorer=sklearn_scorer,
        aliases=("sklearn_sgd_ocsvm",),
    ),
    DetectorInfo(
        "sklearn_elliptic_envelope",
        "sklearn.covariance:EllipticEnvelope",
        "scikit-learn's elliptic envelope: robust (MCD) Mahalanobis distance.",
        fit_cost="O(n * d^2 + d^3) per C-step",
        score_cost="O(m * d^2)",
        deterministic=False,
        scorer=sklearn_scorer,
    ),
]

_DEEP = [
    DetectorInfo(
        "autoencoder",
        "pyod.models.auto_encoder:AutoEncoder",
        "PyOD's fully connected autoencoder: reconstruction error (torch, CPU).",
        fit_cost="O(n * epochs * network size)",
        score_cost="O(m * network size)",
        deterministic=True,
        aliases=("auto_encoder",),
        requires=("torch", "tqdm"),
        extra="deep",
        defaults={"verbose": 0},
        notes="Deterministic with its default random_state=42 (CPU); float32 arithmetic.",
    ),
    DetectorInfo(
        "lunar",
        "pyod.models.lunar:LUNAR",
        "LUNAR: a graph neural network over k-nearest-neighbour distances (torch, CPU).",
        fit_cost="O(n * k * d + n * epochs)",
        score_cost="O(m * k * log n)",
        deterministic=False,
        requires=("torch", "tqdm"),
        extra="deep",
        defaults={"verbose": 0},
    ),
    DetectorInfo(
        "deep_svdd",
        "pyod.models.deep_svdd:DeepSVDD",
        "Deep support vector data description: distance to a learned centre (torch, CPU).",
        fit_cost="O(n * epochs * network size)",
        score_cost="O(m * network size)",
        deterministic=False,
        requires=("torch", "tqdm"),
        extra="deep",
        defaults={"verbose": 0},
        needs_n_features=True,
    ),
]

#: PyOD detectors ADP does not register, and why.
EXCLUDED: dict[str, str] = {
    "lmdd": (
        "transductive: a row's score is how much it raises the dissimilarity of the scored "
        "batch, over random orderings of that batch; there is no fitted model to freeze"
    ),
    "loci": (
        "scores depend on the scored batch's neighbourhoods, and fitting is O(n^3) in time "
        "(49 s for 400 rows)"
    ),
    "sos": "stochastic outlier selection computes affinities among the scored batch only",
    "cd": "Cook's distance regresses the last column on the others: needs a target",
    "vae": "scoring samples the latent space: the same row scores differently on each call",
    "dif": "scores change with the scored batch (batch-level float32 representations)",
    "lscp": "needs a list of detector objects; use create_detector('ensemble', ...)",
    "suod": "needs the suod package; use fit(strategy='bagging') or an ensemble",
    "xgbod": "supervised (needs labels)",
    "so_gaal/mo_gaal/alad/anogan/ae1svm/devnet": "GPU-oriented deep models, not registered",
}

#: Every entry of the catalogue, in the order they are registered.
ENTRIES: tuple[DetectorInfo, ...] = (*_CORE, *_PYOD, *_SKLEARN, *_DEEP)
#: The entries that need no deep-learning framework (cheap to import ahead of use).
CLASSIC: tuple[DetectorInfo, ...] = (*_CORE, *_PYOD, *_SKLEARN)

__all__ = ["CLASSIC", "ENTRIES", "EXCLUDED"]

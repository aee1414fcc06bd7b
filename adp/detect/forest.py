"""Distributed isolation-forest fitting: trees grown on different workers, merged into one.

Like LinkedIn's Spark ``isolation-forest``, each worker grows its share of the trees on the
sample rows drawn from its own partitions, and the trees are then put together into one
forest. An isolation tree depends only on its own sub-sample of ``max_samples`` rows, so a
forest of trees grown on different partition samples is an isolation forest of the whole
sample, not an approximation of one. The merged model is a plain scikit-learn
``IsolationForest``: its ``estimators_``, ``estimators_features_`` and per-tree path-length
tables are the concatenation of the parts', every part uses the same ``max_samples`` (so the
normalising path length is shared), and ``offset_`` is recomputed on the whole sample.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from adp.detect.treescore import CompiledForest, NonFiniteInput, UnsupportedForest
from adp.errors import DetectorError

_FOREST_PARAMS = ("max_samples", "max_features", "bootstrap", "n_estimators", "random_state")


def forest_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a PyOD ``IForest`` or scikit-learn ``IsolationForest`` that matter
    to the distributed fit, checked (``behaviour``, ``verbose``, ``n_jobs`` are ignored)."""
    unknown = sorted(
        set(params) - {*_FOREST_PARAMS, "behaviour", "verbose", "n_jobs", "warm_start"}
    )
    if unknown:
        raise DetectorError(f"parameters {unknown} are not supported by strategy='distributed'")
    if params.get("warm_start"):
        raise DetectorError("strategy='distributed' does not support warm_start=True")
    return {k: params[k] for k in _FOREST_PARAMS if k in params}


def tree_shares(n_estimators: int, n_parts: int) -> list[int]:
    """Trees each part grows: ``n_estimators`` split as evenly as possible."""
    if n_parts > n_estimators:
        raise DetectorError(
            f"cannot grow {n_estimators} trees on {n_parts} parts: lower n_models "
            "or raise n_estimators"
        )
    return [len(s) for s in np.array_split(np.arange(n_estimators), n_parts)]


def resolve_max_samples(max_samples: Any, smallest_part: int) -> int:
    """One ``max_samples`` (rows per tree) for every part, so all trees share one scale."""
    if max_samples in (None, "auto"):
        wanted = 256
    elif isinstance(max_samples, float):
        raise DetectorError(
            "strategy='distributed' needs max_samples as 'auto' or a number of rows, "
            f"not a fraction ({max_samples!r})"
        )
    else:
        wanted = int(max_samples)
    return max(1, min(wanted, smallest_part))


def grow(
    X: np.ndarray,
    n_trees: int,
    max_samples: int,
    params: dict[str, Any],
    seed: int,
) -> IsolationForest:
    """Grow ``n_trees`` isolation trees on ``X`` (one worker's share)."""
    kwargs = {k: v for k, v in params.items() if k not in ("n_estimators", "random_state")}
    kwargs.update(n_estimators=n_trees, max_samples=max_samples, random_state=seed, n_jobs=1)
    return IsolationForest(**kwargs).fit(X)


def merge(forests: Sequence[IsolationForest]) -> IsolationForest:
    """One forest holding every tree of ``forests`` (all with the same ``max_samples``)."""
    if not forests:
        raise DetectorError("no forest to merge")
    sizes = {f._max_samples for f in forests}
    features = {f.n_features_in_ for f in forests}
    if len(sizes) != 1 or len(features) != 1:
        raise DetectorError(
            f"cannot merge forests with different max_samples {sorted(sizes)} "
            f"or feature counts {sorted(features)}"
        )
    merged = copy.copy(forests[0])
    merged.estimators_ = [t for f in forests for t in f.estimators_]
    merged.estimators_features_ = [x for f in forests for x in f.estimators_features_]
    merged._decision_path_lengths = [x for f in forests for x in f._decision_path_lengths]
    merged._average_path_length_per_tree = [
        x for f in forests for x in f._average_path_length_per_tree
    ]
    merged.n_estimators = len(merged.estimators_)
    if hasattr(merged, "_seeds"):
        merged._seeds = np.concatenate([f._seeds for f in forests])
    return merged


def set_offset(
    forest: IsolationForest, scores: Sequence[np.ndarray], contamination: float | str
) -> IsolationForest:
    """Set ``offset_`` as scikit-learn's fit would on the whole sample.

    ``scores`` are the merged forest's ``score_samples`` of each part's sample rows.
    """
    if isinstance(contamination, str):  # "auto", as in scikit-learn
        forest.offset_ = -0.5
    else:
        forest.offset_ = float(np.percentile(np.concatenate(scores), 100.0 * contamination))
    forest.contamination = contamination
    return forest


class ForestScorer:
    """Score rows with a (merged) scikit-learn ``IsolationForest``.

    The forest is compiled (:class:`~adp.detect.treescore.CompiledForest`) when it can be:
    the same scores, several times faster than ``IsolationForest.score_samples``. Rows
    with NaN or infinite values, inputs other than numpy arrays and forests that cannot be
    compiled are scored by scikit-learn.

    Parameters
    ----------
    forest : IsolationForest
        The fitted forest.
    pyod_scale : bool
        ``True``: PyOD ``IForest``'s score, ``-decision_function`` (``offset_`` minus
        ``score_samples``); ``False``: scikit-learn's, negated ``score_samples``.
    compiled : bool
        ``False`` always scores with scikit-learn.

    Attributes
    ----------
    compiled : CompiledForest or None
        The compiled forest, ``None`` when it does not apply.
    """

    def __init__(self, forest: IsolationForest, pyod_scale: bool, compiled: bool = True) -> None:
        self.forest = forest
        self.pyod_scale = pyod_scale
        self.compiled: CompiledForest | None = None
        if compiled:
            try:
                self.compiled = CompiledForest.from_forest(forest)
            except UnsupportedForest:
                self.compiled = None

    def _score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``score_samples`` (compiled when possible)."""
        if self.compiled is not None and isinstance(X, np.ndarray):
            try:
                return self.compiled.score_samples(X)
            except NonFiniteInput:
                pass
        return np.asarray(self.forest.score_samples(X), dtype=np.float64)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """ADP's score of each row of ``X`` (higher = more anomalous)."""
        scores = self._score_samples(X)
        if self.pyod_scale:  # -decision_function, as scikit-learn and PyOD compute it
            return -(scores - self.forest.offset_)
        return -scores


def fit_pyod_iforest(estimator: Any, X: np.ndarray) -> Any:
    """PyOD ``IForest.fit``, with the training rows scored once, by the compiled forest.

    PyOD's fit scores the training rows twice with scikit-learn: inside
    ``IsolationForest.fit`` for ``offset_`` and again for ``decision_scores_``. Here the
    forest is grown with ``contamination="auto"`` (no scoring; the trees do not depend on
    contamination), the rows are scored once, and ``offset_``, ``decision_scores_``,
    ``threshold_`` and ``labels_`` are set exactly as the two fits set them.

    Parameters
    ----------
    estimator : pyod.models.iforest.IForest
        Unfitted; its parameters are used as given.
    X : ndarray of shape (n_samples, n_features)
        The finite training matrix.

    Returns
    -------
    IForest
        ``estimator``, fitted.
    """
    X = np.asarray(X)
    estimator._set_n_classes(None)
    forest = IsolationForest(
        n_estimators=estimator.n_estimators,
        max_samples=estimator.max_samples,
        contamination="auto",
        max_features=estimator.max_features,
        bootstrap=estimator.bootstrap,
        n_jobs=estimator.n_jobs,
        random_state=estimator.random_state,
        verbose=estimator.verbose,
    ).fit(X)
    scores = ForestScorer(forest, pyod_scale=False)._score_samples(X)
    set_offset(forest, [scores], estimator.contamination)
    estimator.detector_ = forest
    estimator.decision_scores_ = -(scores - forest.offset_)
    estimator._process_decision_scores()
    return estimator

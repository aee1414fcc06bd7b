"""The partitioned detector: fit once on a sample, score every partition in parallel.

Follows dask-ml's ``ParallelPostFit``: the fitted model travels to the workers once as a
single graph key, and module-level partition functions do the scoring, one task per input
partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect import fitting
from adp.detect.features import feature_matrix, resolve_features
from adp.detect.registry import detector_info
from adp.detect.sampling import plan_sample
from adp.detect.scorers import Scorer
from adp.detect.threshold import Threshold, flag, from_spec
from adp.errors import DetectorError, NotFittedError

#: The fit strategies :meth:`Detector.fit` accepts.
STRATEGIES = fitting.STRATEGIES


def _default_n_models(n_parts: int) -> int:
    """Models for the distributed and bagging strategies: one per worker (at least 2)."""
    try:
        from distributed import get_client

        workers = len(get_client().scheduler_info(n_workers=-1)["workers"])
    except (ImportError, ValueError, KeyError, TypeError):
        workers = 4
    return max(1, min(n_parts, max(2, workers)))


def check_contamination(contamination: float | str) -> float | str:
    """A contamination in ``(0, 0.5]`` or ``"auto"``; raises DetectorError otherwise."""
    if isinstance(contamination, str):
        if contamination.strip().lower() == "auto":
            return "auto"
        raise DetectorError(f"contamination must be in (0, 0.5] or 'auto', got {contamination!r}")
    if not 0 < float(contamination) <= 0.5:
        raise DetectorError(f"contamination must be in (0, 0.5] or 'auto', got {contamination!r}")
    return float(contamination)


def _score_partition(
    part: pd.DataFrame,
    scorer: Scorer,
    features: list[str],
    key: list[str],
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    started = time.perf_counter()
    out = part[key].copy() if key else pd.DataFrame(index=part.index)
    if len(part):
        number = partition_info["number"] if partition_info else "?"
        X = feature_matrix(part, features, where=f"partition {number}")
        out["score"] = scorer.score_samples(X).astype(np.float64, copy=False)
    else:
        out["score"] = np.empty(0, dtype=np.float64)
    _report(rows_scored=len(part), partition_score_seconds=time.perf_counter() - started)
    return out


def _shared_partitions(frame: dd.DataFrame) -> dd.DataFrame:
    """``frame`` rebuilt on its own optimised partition tasks.

    The global threshold and the flags are two graphs over the same scores. Built on
    ``frame`` itself, each is optimised on its own, dask fuses the scoring into different
    tasks, and every partition is read and scored twice. Built on the partitions of
    ``frame.to_delayed()``, both depend on the same keys, so one ``compute`` scores each
    partition once, and holds only its small score frame until the flags are done.
    """
    # verify_meta=True: dask's from_delayed without it emits self-referencing aliases that
    # dask.array's fusion rejects (KeyError 'pop from an empty set' in to_xarray).
    return dd.from_delayed(
        frame.to_delayed(),
        meta=frame._meta,
        divisions=frame.divisions,
        verify_meta=True,
    )


def _report(**figures: float) -> None:
    try:
        from adp.observe.events import report
    except ImportError:  # pragma: no cover - observe ships with adp
        return
    report(**figures)


class Detector:
    """An anomaly detector that fits on a sample and scores a dask DataFrame in parallel.

    Create one with :func:`adp.create_detector`. Parameters are stored as given; fitted
    attributes end with an underscore, as in scikit-learn.

    Parameters
    ----------
    name : str
        A registered detector name or alias (see ``adp detectors``).
    contamination : float or "auto"
        Share of rows to flag, over the whole scored dataset (default 0.1, as in PyOD), or
        ``"auto"`` to flag by a robust rule on the scores
        (:class:`~adp.detect.threshold.AutoThreshold`).
    **params
        The estimator's own parameters.

    Attributes
    ----------
    features_ : list of str
        The feature columns, in order, learned by :meth:`fit`.
    scorer_ : Scorer
        The fitted, partition-invariant scorer shipped to the workers.
    reference_ : ndarray
        Per-feature medians of the training rows (the baseline of explanations).
    strategy_ : str
        The fit strategy used.
    n_models_ : int
        Models fitted (more than one for ``bagging`` and ``distributed``).
    n_samples_fit_ : int
        Rows in the fit sample.
    n_rows_seen_ : int
        Rows in the dataset the sample was drawn from.
    fit_seconds_ : float
        Time spent in the estimators' ``fit`` (summed over models).
    """

    def __init__(self, name: str, contamination: float | str = 0.1, **params: Any) -> None:
        self.info = detector_info(name)
        valid = self.info.valid_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise DetectorError(
                f"unknown parameters {unknown} for detector {self.info.name!r}; "
                f"valid parameters: {', '.join(valid)}"
            )
        self.name = self.info.name
        self.contamination = check_contamination(contamination)
        self.params = dict(params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        sep = ", " if args else ""
        return f"Detector({self.name!r}, contamination={self.contamination!r}{sep}{args})"

    @property
    def fit_contamination(self) -> float:
        """The contamination given to the estimator (PyOD's default 0.1 for ``"auto"``)."""
        return 0.1 if isinstance(self.contamination, str) else self.contamination

    def get_params(self) -> dict[str, Any]:
        """All parameters, ``contamination`` included."""
        return {"contamination": self.contamination, **self.params}

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "scorer_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"detector {self.name!r} is not fitted: call fit(ddf) first")

    def _strategies(self) -> tuple[str, ...]:
        return self.info.strategies

    def _max_fit_rows(self) -> int | None:
        return self.info.max_fit_rows

    def fit(
        self,
        ddf: dd.DataFrame,
        features: Sequence[str] | None = None,
        sample_rows: int | None = None,
        random_state: int | None = None,
        *,
        exclude: Sequence[str] = (),
        key: Sequence[str] = (),
        strategy: str = "sample",
        n_models: int | None = None,
    ) -> Detector:
        """Fit on a uniform random sample of ``ddf``, drawn and fitted on the cluster.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            The training data; may carry other columns (labels, keys).
        features : sequence of str, optional
            Feature columns; default every numeric column not in ``exclude`` or ``key``.
        sample_rows : int, optional
            At most this many rows are drawn (every row when there are fewer); default
            ``adp.fit.sample-rows`` (100000).
        random_state : int, optional
            Seed for the sample (and the models of ``distributed`` and ``bagging``);
            defaults to the detector's ``random_state`` parameter.
        exclude, key : sequence of str
            Columns never used as features.
        strategy : {"sample", "distributed", "bagging"}
            ``sample``: one model on the whole sample, in one task. ``distributed``
            (isolation forests): each of ``n_models`` groups of partitions grows its share
            of the trees on its own sample rows, and the trees are merged into one forest.
            ``bagging``: one model per group of partitions, their standardised scores
            averaged.
        n_models : int, optional
            Groups of partitions for ``distributed`` and ``bagging``; default one per
            worker (at least 2, at most the partitions holding sample rows).

        Returns
        -------
        Detector
            ``self``, fitted.
        """
        from adp.config import settings

        if strategy not in STRATEGIES:
            raise DetectorError(
                f"unknown fit strategy {strategy!r}; valid: {', '.join(STRATEGIES)}"
            )
        if strategy not in self._strategies():
            raise DetectorError(
                f"detector {self.name!r} does not support strategy={strategy!r}; "
                f"it supports {', '.join(self._strategies())}"
            )
        if n_models is not None and int(n_models) < 1:
            raise DetectorError(f"n_models must be at least 1, got {n_models!r}")
        self.features_ = resolve_features(ddf, features, exclude=exclude, key=key)
        if sample_rows is None:
            sample_rows = settings().fit.sample_rows
        cap = self._max_fit_rows()
        if strategy == "sample" and cap is not None:
            sample_rows = min(sample_rows, cap)
        if random_state is None:
            random_state = self.params.get("random_state")
        parts, counts, size, total = plan_sample(ddf[self.features_], sample_rows, random_state)
        if n_models is None:
            n_models = _default_n_models(len(parts))
        planned = self._plan_fit(parts, counts, strategy, int(n_models), random_state)
        result: fitting.FitResult = planned.compute()
        self.scorer_ = result.scorer
        self.reference_ = result.reference
        self.strategy_ = strategy
        self.n_models_ = result.n_models
        self.n_samples_fit_ = size
        self.n_rows_seen_ = total
        self.fit_seconds_ = result.seconds
        self.model_id_ = uuid.uuid4().hex
        return self

    def _plan_fit(
        self,
        parts: list[Delayed],
        counts: list[int],
        strategy: str,
        n_models: int,
        random_state: int | None,
    ) -> Delayed:
        args = (self.info, self.params, self.fit_contamination)
        if strategy == "distributed":
            return fitting.plan_distributed(
                *args, parts, counts, self.features_, n_models, random_state
            )
        if strategy == "bagging":
            return fitting.plan_bagging(
                *args, parts, counts, self.features_, n_models, random_state
            )
        return fitting.plan_sample(*args, parts, self.features_, seed=random_state)

    def _scorer_ref(self) -> Delayed:
        # One graph key for the model: it is shipped to each worker once, and tokenizing
        # (hashing) a large model is skipped.
        return dask.delayed(self.scorer_, name=f"adp-model-{self.model_id_}")

    def decision_function(
        self, ddf: dd.DataFrame, key: Sequence[str] | None = None
    ) -> dd.DataFrame:
        """Raw scores, lazily: the index, the ``key`` columns and ``score`` (float64).

        One task per input partition. A row's score depends only on the fitted model and
        the row, never on the partition it is in.
        """
        self._check_fitted()
        key_columns = list(key or [])
        resolve_features(ddf, self.features_, key=key_columns)
        meta = ddf._meta[key_columns].copy() if key_columns else pd.DataFrame(index=ddf._meta.index)
        meta["score"] = np.empty(0, dtype=np.float64)
        return ddf.map_partitions(
            _score_partition,
            self._scorer_ref(),
            self.features_,
            key_columns,
            meta=meta,
            enforce_metadata=False,
            align_dataframes=False,
        )

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold:
        """The threshold to use: given; a fixed score if a number; ``"auto"``; else the
        detector's contamination."""
        if threshold is None:
            return from_spec(contamination=self.contamination)
        if isinstance(threshold, str):
            return from_spec(contamination=threshold)
        if isinstance(threshold, int | float):
            return from_spec(score=float(threshold))
        return threshold

    def score(
        self,
        ddf: dd.DataFrame,
        key: Sequence[str] | None = None,
        threshold: Threshold | float | str | None = None,
        explain: int | None = None,
        explain_method: str = "auto",
    ) -> dd.DataFrame:
        """Score every row and flag anomalies against a global threshold, lazily.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Rows to score; must carry the fitted feature columns, may carry others.
        key : sequence of str, optional
            Columns to carry into the result so it joins back to the input (the index is
            always kept).
        threshold : Threshold, float or "auto", optional
            Default: the detector's contamination over *all* rows of ``ddf`` (exact up
            to ties). A float is a fixed score threshold; ``"auto"`` a robust rule.
        explain : int, optional
            Add ``top_features``: the ``explain`` most contributing feature names of each
            flagged row (``None`` for the others). See :mod:`adp.detect.explain`.
        explain_method : {"auto", "native", "ablation"}
            How features are ranked.

        Returns
        -------
        dask.dataframe.DataFrame
            ``key`` columns, ``score`` (float64, higher = more anomalous),
            ``is_anomaly`` (bool) and, with ``explain``, ``top_features``; one partition
            per input partition.

        Notes
        -----
        With ``explain``, each partition's features are needed again after the global
        threshold is known, so dask keeps them in memory between the passes. For data
        larger than the cluster's memory, score first and then call
        :func:`adp.detect.explain.explain_flagged` on a fresh read (as the job runner does).
        """
        scored = _shared_partitions(self.decision_function(ddf, key))
        rule = self.threshold_rule(threshold)
        flagged = flag(scored, rule.resolve(scored["score"]))
        if explain is None:
            return flagged
        from adp.detect.explain import explain_flagged

        return explain_flagged(ddf, flagged, self, int(explain), explain_method)


def create_detector(name: str, **params: Any) -> Detector:
    """Create a detector by name.

    Parameters
    ----------
    name : str
        A registered name or alias, such as ``"isolation_forest"`` (``"iforest"``),
        ``"ecod"``, ``"copod"``, ``"hbos"``, ``"lof"``, ``"knn"``, ``"one_class_svm"``
        (``"ocsvm"``) or ``"pca"``; ``adp detectors`` lists them all. ``"ensemble"``
        combines several (see :class:`adp.detect.ensemble.EnsembleDetector`).
    **params
        The detector's parameters; ``contamination`` (default 0.1, or ``"auto"``) is
        accepted by all.

    Raises
    ------
    adp.errors.DetectorError
        For an unknown name or parameter, listing the valid ones.

    Examples
    --------
    >>> det = adp.create_detector("iforest", n_estimators=200, random_state=0)
    >>> det.name
    'isolation_forest'
    >>> ens = adp.create_detector("ensemble", detectors=["ecod", "iforest"], combination="max")
    """
    if str(name).lower() == "ensemble":
        from adp.detect.ensemble import EnsembleDetector

        return EnsembleDetector(**params)
    return Detector(name, **params)

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

from adp.detect.features import feature_matrix, resolve_features
from adp.detect.registry import DetectorInfo, detector_info
from adp.detect.sampling import uniform_sample
from adp.detect.scorers import Scorer
from adp.detect.threshold import Threshold, flag, from_spec
from adp.errors import DetectorError, NotFittedError


def _fit_scorer(
    info: DetectorInfo,
    params: dict[str, Any],
    contamination: float,
    parts: list[pd.DataFrame],
    features: list[str],
) -> tuple[Scorer, float]:
    sample = pd.concat(parts) if len(parts) > 1 else parts[0]
    X = feature_matrix(sample, features, where="fit sample")
    started = time.perf_counter()
    estimator = info.build(params, contamination)
    estimator.fit(X)
    scorer = info.scorer(estimator, X)
    return scorer, time.perf_counter() - started


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
    contamination : float
        Share of rows to flag, over the whole scored dataset (default 0.1, as in PyOD).
    **params
        The estimator's own parameters.

    Attributes
    ----------
    features_ : list of str
        The feature columns, in order, learned by :meth:`fit`.
    scorer_ : Scorer
        The fitted, partition-invariant scorer shipped to the workers.
    n_samples_fit_ : int
        Rows in the fit sample.
    n_rows_seen_ : int
        Rows in the dataset the sample was drawn from.
    fit_seconds_ : float
        Time spent in the estimator's ``fit``.
    """

    def __init__(self, name: str, contamination: float = 0.1, **params: Any) -> None:
        self.info = detector_info(name)
        valid = self.info.valid_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise DetectorError(
                f"unknown parameters {unknown} for detector {self.info.name!r}; "
                f"valid parameters: {', '.join(valid)}"
            )
        if not 0 < float(contamination) <= 0.5:
            raise DetectorError(f"contamination must be in (0, 0.5], got {contamination!r}")
        self.name = self.info.name
        self.contamination = float(contamination)
        self.params = dict(params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in sorted(self.params.items()))
        sep = ", " if args else ""
        return f"Detector({self.name!r}, contamination={self.contamination}{sep}{args})"

    def get_params(self) -> dict[str, Any]:
        """All parameters, ``contamination`` included."""
        return {"contamination": self.contamination, **self.params}

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "scorer_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"detector {self.name!r} is not fitted: call fit(ddf) first")

    def fit(
        self,
        ddf: dd.DataFrame,
        features: Sequence[str] | None = None,
        sample_rows: int | None = None,
        random_state: int | None = None,
        *,
        exclude: Sequence[str] = (),
        key: Sequence[str] = (),
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
            Seed for the sample; defaults to the detector's ``random_state`` parameter.
        exclude, key : sequence of str
            Columns never used as features.

        Returns
        -------
        Detector
            ``self``, fitted.
        """
        from adp.config import settings

        self.features_ = resolve_features(ddf, features, exclude=exclude, key=key)
        if sample_rows is None:
            sample_rows = settings().fit.sample_rows
        if random_state is None:
            random_state = self.params.get("random_state")
        parts, size, total = uniform_sample(ddf[self.features_], sample_rows, random_state)
        fitted = dask.delayed(_fit_scorer, pure=False)(
            self.info, self.params, self.contamination, parts, self.features_
        )
        scorer, seconds = fitted.compute()
        self.scorer_ = scorer
        self.n_samples_fit_ = size
        self.n_rows_seen_ = total
        self.fit_seconds_ = seconds
        self.model_id_ = uuid.uuid4().hex
        return self

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

    def threshold_rule(self, threshold: Threshold | float | None = None) -> Threshold:
        """The threshold to use: given, a fixed score if a number, else the contamination."""
        if threshold is None:
            return from_spec(contamination=self.contamination)
        if isinstance(threshold, int | float):
            return from_spec(score=float(threshold))
        return threshold

    def score(
        self,
        ddf: dd.DataFrame,
        key: Sequence[str] | None = None,
        threshold: Threshold | float | None = None,
    ) -> dd.DataFrame:
        """Score every row and flag anomalies against a global threshold, lazily.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Rows to score; must carry the fitted feature columns, may carry others.
        key : sequence of str, optional
            Columns to carry into the result so it joins back to the input (the index is
            always kept).
        threshold : Threshold or float, optional
            Default: the detector's contamination over *all* rows of ``ddf`` (exact up
            to ties). A float is a fixed score threshold.

        Returns
        -------
        dask.dataframe.DataFrame
            ``key`` columns, ``score`` (float64, higher = more anomalous) and
            ``is_anomaly`` (bool); one partition per input partition.
        """
        scored = self.decision_function(ddf, key)
        rule = self.threshold_rule(threshold)
        return flag(scored, rule.resolve(scored["score"]))


def create_detector(name: str, **params: Any) -> Detector:
    """Create a detector by name.

    Parameters
    ----------
    name : str
        A registered name or alias, such as ``"isolation_forest"`` (``"iforest"``),
        ``"ecod"``, ``"copod"``, ``"hbos"``, ``"lof"``, ``"knn"``, ``"one_class_svm"``
        (``"ocsvm"``) or ``"pca"``; ``adp detectors`` lists them all.
    **params
        The detector's parameters; ``contamination`` (default 0.1) is accepted by all.

    Raises
    ------
    adp.errors.DetectorError
        For an unknown name or parameter, listing the valid ones.

    Examples
    --------
    >>> det = adp.create_detector("iforest", n_estimators=200, random_state=0)
    >>> det.name
    'isolation_forest'
    """
    return Detector(name, **params)

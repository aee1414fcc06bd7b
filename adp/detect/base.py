"""The estimator: what every ADP detector shares (fit on a sample, detect, parameters).

:class:`BaseDetector` follows scikit-learn's estimator contract: ``__init__`` stores the
parameters as given and nothing else; :meth:`~BaseDetector.get_params`,
:meth:`~BaseDetector.set_params` and :func:`sklearn.base.clone` work; everything
:meth:`~BaseDetector.fit` learns ends with an underscore, and it is everything scoring needs
(features, scorer, missing-value policy and its fit-time medians), so a pickled or
registered detector scores new data exactly as it scored the data it was fitted on.

The single-model :class:`~adp.detect.single.Detector` and the
:class:`~adp.detect.ensemble.EnsembleDetector` derive from it; they differ in their
parameters and in how they plan the fit (:meth:`BaseDetector._plan_fit`).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Sequence
from typing import Any, Self

import dask.dataframe as dd
from dask.delayed import Delayed

from adp.context.fitted import fit_context
from adp.context.spec import Context
from adp.detect import fitting, local, shipping
from adp.detect.detection import ScoreStage, raw_scores, run_detection
from adp.detect.features import resolve_features
from adp.detect.inspection import Inspection, inspect_apart, sample_inspecting
from adp.detect.sampling import plan_sample
from adp.detect.threshold import Threshold, check_contamination, from_spec
from adp.errors import DetectorError, NotFittedError
from adp.io.validate import MissingPolicy, apply_missing_policy

#: The fit strategies :meth:`BaseDetector.fit` accepts.
STRATEGIES = fitting.STRATEGIES

#: Fitted attributes every detector has after :meth:`BaseDetector.fit`.
FITTED_ATTRIBUTES = (
    "features_",
    "scorer_",
    "reference_",
    "missing_",
    "medians_",
    "strategy_",
    "n_models_",
    "n_samples_fit_",
    "n_rows_seen_",
    "fit_seconds_",
    "model_id_",
    "context_",
)


def _default_n_models(n_parts: int) -> int:
    """Models for the distributed and bagging strategies: one per worker (at least 2)."""
    try:
        from distributed import get_client

        workers = len(get_client().scheduler_info(n_workers=-1)["workers"])
    except (ImportError, ValueError, KeyError, TypeError):
        workers = 4
    return max(1, min(n_parts, max(2, workers)))


class BaseDetector:
    """Shared fit / detect machinery of ADP's detectors (not instantiated itself).

    Subclasses define ``__init__`` (storing parameters only), :meth:`get_params`,
    :meth:`_param_names`, :meth:`_validate`, :meth:`_plan_fit` and, if they differ from
    the defaults, :meth:`_strategies`, :meth:`_max_fit_rows` and :meth:`_default_seed`.

    Attributes
    ----------
    features_ : list of str
        The feature columns, in order, learned by :meth:`fit`.
    scorer_ : Scorer
        The fitted, partition-invariant scorer shipped to the workers.
    reference_ : ndarray
        Per-feature medians of the training rows (the baseline of explanations).
    missing_ : {"fail", "drop", "impute_median"}
        The missing-value policy, applied again, the same way, by every scoring verb.
    medians_ : dict or None
        ``impute_median``'s fit-time median of each feature (reused when scoring, never
        recomputed on the scored data); ``None`` for the other policies.
    strategy_ : str
        The fit strategy used.
    n_models_ : int
        Models fitted (more than one for ``bagging``, ``distributed`` and ensembles).
    n_samples_fit_ : int
        Rows in the fit sample.
    n_rows_seen_ : int
        Rows in the dataset the sample was drawn from (after the missing-value policy).
    fit_seconds_ : float
        Time spent in the estimators' ``fit`` (summed over models).
    model_id_ : str
        A random id of this fit; names the model's key in dask graphs.
    context_ : FittedContext or None
        With a ``context`` parameter: the fitted per-entity baselines, applied again, the
        same way, by every scoring verb (:meth:`prepare`); ``features_`` then names the
        context features (``vibration.diff_from_season``, ...). ``None`` without one.
    """

    name: str
    contamination: float | str
    #: The detector's own parameters as plain data (what the model registry records).
    params: dict[str, Any]

    # -- parameters (scikit-learn's contract) ---------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters, as given to ``__init__`` (``deep`` is accepted and ignored: no
        parameter is itself an estimator to descend into)."""
        raise NotImplementedError

    def _param_names(self) -> list[str]:
        """The names :meth:`set_params` accepts."""
        raise NotImplementedError

    def set_params(self, **params: Any) -> Self:
        """Set parameters; values are checked by :meth:`fit` (and :func:`create_detector`).

        Parameters
        ----------
        **params
            Any of :meth:`get_params`' names (for a single detector, any parameter of its
            estimator).

        Returns
        -------
        BaseDetector
            ``self``.

        Raises
        ------
        adp.errors.DetectorError
            For an unknown parameter, listing the valid ones.
        """
        valid = self._param_names()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise DetectorError(
                f"unknown parameters {unknown} for detector {self.name!r}; "
                f"valid parameters: {', '.join(valid)}"
            )
        for key, value in params.items():
            setattr(self, key, value)
        return self

    def _validate(self) -> None:
        """Check every parameter; raise :class:`~adp.errors.DetectorError` naming it."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    @property
    def fit_contamination(self) -> float:
        """The contamination given to the estimator (PyOD's default 0.1 for ``"auto"``)."""
        share = check_contamination(self.contamination)
        return 0.1 if isinstance(share, str) else share

    # -- fitted state ---------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return hasattr(self, "scorer_")

    def check_fitted(self) -> None:
        """Raise :class:`~adp.errors.NotFittedError` unless :meth:`fit` has run."""
        if not self.is_fitted:
            raise NotFittedError(f"detector {self.name!r} is not fitted: call fit(ddf) first")

    def model_ref(self) -> Delayed:
        """The fitted scorer as one dask graph key, ``adp-model-<model_id_>``.

        Graphs that score or explain depend on this key, so the model is never tokenized
        (hashed), however large. With a distributed client it is sent to the cluster once
        per client and later graphs only refer to it (:mod:`adp.detect.shipping`);
        without one, it is embedded in the graph.
        """
        self.check_fitted()
        return shipping.model_ref(self, self.scorer_, self.model_id_)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Detectors pickled before the missing-value policy was part of the model.
        if "scorer_" in state:
            state.setdefault("missing_", "fail")
            state.setdefault("medians_", None)
            state.setdefault("context_", None)
        self.__dict__.update(state)

    # -- fitting --------------------------------------------------------------------------

    def _strategies(self) -> tuple[str, ...]:
        return ("sample",)

    def _max_fit_rows(self) -> int | None:
        return None

    def _default_seed(self) -> int | None:
        return None

    def _plan_fit(
        self,
        parts: list[Delayed],
        counts: list[int],
        features: list[str],
        strategy: str,
        n_models: int,
        random_state: int | None,
    ) -> Delayed:
        """A lazy :class:`~adp.detect.fitting.FitResult` for the sample ``parts``."""
        raise NotImplementedError

    def _fitted_extras(self) -> dict[str, Any]:
        """Fitted attributes a subclass adds (set after the common ones)."""
        return {}

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
        missing: MissingPolicy = "fail",
        inspect: Inspection | None = None,
    ) -> Self:
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
        missing : {"fail", "drop", "impute_median"}
            The missing-value policy (:func:`adp.io.validate.apply_missing_policy`):
            stop at the first partition with a missing or infinite feature value, leave
            such rows out, or fill them with each feature's median over the whole of
            ``ddf`` (computed here, stored as ``medians_``). Stored as ``missing_`` and
            applied the same way, with the same medians, by every scoring verb.
        inspect : Inspection, optional
            Work to run on every partition of ``ddf`` as read (all its columns) and to
            conclude before the model is fitted, such as a job's data profile and quality
            gate (:class:`adp.detect.inspection.Inspection`). It runs in the pass that
            draws the sample when it can (without a ``context``), so a source with
            partition lengths in its metadata (Parquet) is read once for both; with a
            ``context`` it runs in a pass of its own, first.

        Returns
        -------
        BaseDetector
            ``self``, fitted.

        Raises
        ------
        adp.errors.DetectorError
            For a bad parameter or strategy, naming it.
        adp.errors.ConfigError
            For an unknown ``missing`` policy.
        adp.errors.DataError
            Missing or non-numeric feature columns, an empty dataset, or (``fail``) a
            partition with missing values.
        """
        from adp.config import settings

        self._validate()
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
        context = self._context()
        if inspect is not None and context is not None:
            inspect_apart(ddf, inspect)  # the context's passes shuffle: inspect first
            inspect = None
        if context is not None:
            exclude = [*exclude, *context.used_columns()]
        chosen = resolve_features(ddf, features, exclude=exclude, key=key, context=context)
        fitted_context = None
        if context is not None:
            fitted_context = fit_context(context, ddf, chosen, sample_rows=sample_rows)
            # only what the fit reads goes through the shuffle by entity
            used = list(dict.fromkeys([*context.used_columns(), *chosen]))
            ddf = fitted_context.transform(ddf[used])
            chosen = fitted_context.feature_names
        prepared, medians = apply_missing_policy(ddf[chosen], chosen, missing)
        if sample_rows is None:
            sample_rows = settings().fit.sample_rows
        cap = self._max_fit_rows()
        if strategy == "sample" and cap is not None:
            sample_rows = min(sample_rows, cap)
        if random_state is None:
            random_state = self._default_seed()
        # one small in-memory partition: fitted here, not on the cluster (adp.detect.local)
        scheduler = None if context is not None else local.scheduler_for(ddf[chosen])
        if inspect is not None:
            args = (ddf, prepared, chosen, missing, medians, sample_rows, random_state, inspect)
            parts, counts, size, total = sample_inspecting(*args, scheduler=scheduler)
        else:
            # "fail" and "impute_median" keep every row: the lengths can come from the
            # source's metadata (Parquet footers) instead of a count.
            parts, counts, size, total = plan_sample(
                prepared,
                sample_rows,
                random_state,
                lengths_from=None if missing == "drop" or context else ddf[chosen],
            )
        if n_models is None:
            n_models = _default_n_models(len(parts))
        planned = self._plan_fit(parts, counts, chosen, strategy, int(n_models), random_state)
        model_id = uuid.uuid4().hex
        pick = operator.attrgetter("scorer")
        result: fitting.FitResult = shipping.compute_fit(self, planned, pick, model_id, scheduler)
        self.features_ = chosen
        self.scorer_ = result.scorer
        self.reference_ = result.reference
        self.missing_ = missing
        self.medians_ = medians
        self.strategy_ = strategy
        self.n_models_ = result.n_models
        self.n_samples_fit_ = size
        self.n_rows_seen_ = total
        self.fit_seconds_ = result.seconds
        self.model_id_ = model_id
        self.context_ = fitted_context
        for name, value in self._fitted_extras().items():
            setattr(self, name, value)
        return self

    def _context(self) -> Context | None:
        """The ``context`` parameter, parsed (``None`` when not given)."""
        given = getattr(self, "context", None)
        return None if given is None else Context.from_spec(given)

    # -- scoring --------------------------------------------------------------------------

    def prepare(self, ddf: dd.DataFrame) -> dd.DataFrame:
        """``ddf`` with the fitted context features and missing-value policy, lazily.

        With a fitted context (``context_``), its features are added first, from its
        stored baselines (the frame then comes shuffled by entity: see
        :mod:`adp.context.fitted`). Then the same missing-value policy as :meth:`fit` with
        the *stored* medians (``medians_``), never medians of ``ddf``. Other columns are
        kept.

        Raises
        ------
        adp.errors.NotFittedError
            Before :meth:`fit`.
        adp.errors.DataError
            Naming feature columns that are missing or not numeric.
        """
        self.check_fitted()
        fitted_context = getattr(self, "context_", None)
        if fitted_context is not None:
            ddf = fitted_context.transform(ddf)
        prepared, _ = apply_missing_policy(
            ddf, self.features_, self.missing_, medians=self.medians_
        )
        return prepared

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold:
        """The threshold rule to flag with.

        Parameters
        ----------
        threshold : Threshold, float or "auto", optional
            A rule, used as given; a number: a fixed score; ``"auto"``: the robust rule
            (:class:`~adp.detect.threshold.AutoThreshold`); ``None``: the detector's
            contamination (an exact global share, or ``"auto"``).
        """
        if threshold is None:
            return from_spec(contamination=check_contamination(self.contamination))
        if isinstance(threshold, str):
            return from_spec(contamination=threshold)
        if isinstance(threshold, int | float):
            return from_spec(score=float(threshold))
        return threshold

    def decision_function(self, ddf: dd.DataFrame) -> dd.Series:
        """Raw anomaly scores, lazily (PyOD's name and orientation: higher = more anomalous).

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Rows to score, with the fitted feature columns.

        Returns
        -------
        dask.dataframe.Series
            ``score`` (float64), indexed like ``ddf`` (after the missing-value policy), one
            task per input partition; a row's score depends only on the model and the row.
        """
        return raw_scores(self, self.prepare(ddf))["score"]

    def predict(self, ddf: dd.DataFrame) -> dd.Series:
        """Anomaly labels, lazily: ``True`` for the rows at or above the global threshold
        of the detector's contamination (:meth:`threshold_rule` with ``None``).

        Returns
        -------
        dask.dataframe.Series
            ``is_anomaly`` (bool), indexed like ``ddf``.
        """
        return run_detection(self, ddf).frame["is_anomaly"]

    def detect(
        self,
        ddf: dd.DataFrame,
        key: Sequence[str] | None = None,
        explain: int = 0,
        *,
        threshold: Threshold | float | str | None = None,
        explain_method: str = "auto",
        stage: ScoreStage | None = None,
    ) -> dd.DataFrame:
        """Score every row and flag anomalies against a global threshold, lazily.

        Parameters
        ----------
        ddf : dask.dataframe.DataFrame
            Rows to score; must carry the fitted feature columns, may carry others.
        key : sequence of str, optional
            Columns to carry into the result so it joins back to the input (the index is
            always kept).
        explain : int
            With ``explain > 0``, add ``top_features``: the ``explain`` most contributing
            feature names of each flagged row (``None`` for the others). See
            :mod:`adp.detect.explain`.
        threshold : Threshold, float or "auto", optional
            Default: the detector's contamination over *all* rows of ``ddf`` (exact up
            to ties). A float is a fixed score threshold; ``"auto"`` a robust rule.
        explain_method : {"auto", "native", "ablation"}
            How features are ranked.
        stage : ScoreStage, optional
            Where raw scores live before flagging (:mod:`adp.detect.detection`); default
            in memory, one lazy graph.

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
        larger than the cluster's memory, use a staging :class:`ScoreStage` (as the job
        runner does). A small frame of one in-memory partition (:mod:`adp.detect.local`)
        is scored at once, in this process, with the same results as on the cluster.
        """
        return run_detection(
            self,
            ddf,
            key=key,
            threshold=threshold,
            explain=explain,
            explain_method=explain_method,
            stage=stage,
        ).frame

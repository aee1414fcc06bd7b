"""``adp.search``: find a good detector and its hyperparameters on the cluster.

A search draws one uniform sample of the data on the workers, places it on every worker,
then runs one task per candidate (see :mod:`adp.tuning.engines` for which engine runs them
and why). With ``label=`` each candidate is cross-validated against the labels; without,
candidates are compared with each other by an unsupervised criterion
(:mod:`adp.tuning.selection`). The winner is refitted the ordinary way
(:meth:`adp.Detector.fit`) and can be registered with :mod:`adp.models`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client

from adp.detect.base import BaseDetector
from adp.detect.detector import create_detector
from adp.detect.features import resolve_features
from adp.detect.threshold import check_contamination
from adp.errors import ConfigError, DataError
from adp.io.validate import MissingPolicy, apply_missing_policy
from adp.tuning.engines import Engine, label_counts, place_sample, run_dask_ml, run_futures
from adp.tuning.selection import CRITERIA, DEFAULT_CRITERION, criterion
from adp.tuning.space import Strategy, draw_candidates
from adp.tuning.trials import SUPERVISED_METRICS, TrialOutcome, contamination_of

if TYPE_CHECKING:  # pragma: no cover
    from adp.models.metadata import ModelVersion

LEADERBOARD_COLUMNS = [
    "trial",
    "detector",
    "params",
    "score",
    "score_std",
    "fit_seconds",
    "trial_seconds",
    "status",
    "error",
]
_STATUS_ORDER = {"ok": 0, "failed": 1, "cancelled": 2, "skipped": 3}


@dataclass
class SearchResult:
    """What a search found.

    Attributes
    ----------
    leaderboard : pandas.DataFrame
        One row per candidate, best first: ``trial``, ``detector``, ``params`` (dict),
        ``score`` (the metric or criterion, higher is better; NaN unless ``status`` is
        ``"ok"``), ``score_std`` (across folds), ``fit_seconds`` (one fit, mean over
        folds), ``trial_seconds``, ``status`` (``ok``, ``failed``, ``cancelled``,
        ``skipped``) and ``error``.
    best_detector : BaseDetector or None
        The winner, fitted on the data when the search ran with ``refit=True`` (the
        default), else unfitted; None when no candidate succeeded.
    metric : str
        The metric (labelled search) or criterion (unlabelled search) used.
    supervised : bool
        Whether labels judged the candidates.
    engine : str
        ``"dask-ml"`` or ``"futures"``.
    features : list of str
        The feature columns.
    label : str or None
    cv : int or None
        Folds (labelled search only).
    sample_size, rows_seen : int
        Rows in the search sample and in the dataset.
    elapsed_seconds : float
        Wall time of sampling and trials (the refit excluded).
    budget_exhausted : bool
        Whether ``time_budget`` cut the search short.
    random_state : int or None
    """

    leaderboard: pd.DataFrame
    best_detector: BaseDetector | None
    metric: str
    supervised: bool
    engine: str
    features: list[str]
    label: str | None
    cv: int | None
    sample_size: int
    rows_seen: int
    elapsed_seconds: float
    budget_exhausted: bool
    random_state: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> pd.Series:
        """The winning leaderboard row."""
        ok = self.leaderboard[self.leaderboard["status"] == "ok"]
        if ok.empty:
            raise DataError(
                "no candidate of the search succeeded; see the 'error' column of the leaderboard"
            )
        return ok.iloc[0]

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best["params"])

    @property
    def best_score(self) -> float:
        return float(self.best["score"])

    def metrics(self) -> dict[str, Any]:
        """The search figures worth keeping with a registered model."""
        best = self.best
        counts = self.leaderboard["status"].value_counts()
        return {
            "metric": self.metric,
            "supervised": self.supervised,
            "score": _finite_or_none(best["score"]),
            "score_std": _finite_or_none(best["score_std"]),
            "cv": self.cv,
            "label": self.label,
            "engine": self.engine,
            "trials": {str(k): int(v) for k, v in counts.items()},
            "search_sample_rows": self.sample_size,
            "search_seconds": round(self.elapsed_seconds, 3),
            "budget_exhausted": self.budget_exhausted,
        }

    def register(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> ModelVersion:
        """Register the (fitted) best detector with :func:`adp.models.register`.

        The search figures (:meth:`metrics`) are stored as the version's metrics; keyword
        arguments (``source``, ``fingerprint``, ``stage``, ``registry``) pass through.
        """
        from adp.models.api import register

        detector = self.best_detector
        if detector is None:
            self.best  # noqa: B018 - raises the explanatory DataError
            raise DataError(
                "the search result holds no detector to register: run the search again "
                "with refit=True"
            )
        return register(detector, name, metadata, metrics=self.metrics(), **kwargs)


def _finite_or_none(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def leaderboard_frame(outcomes: Sequence[TrialOutcome]) -> pd.DataFrame:
    """Outcomes as the leaderboard: ``ok`` rows by score (best first), then the others."""
    rows = [{column: getattr(o, column) for column in LEADERBOARD_COLUMNS} for o in outcomes]
    frame = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    frame["score"] = frame["score"].astype(np.float64)
    frame["_order"] = frame["status"].map(_STATUS_ORDER).fillna(9)
    frame["_neg"] = -frame["score"]
    frame = frame.sort_values(["_order", "_neg", "trial"], na_position="last", kind="stable")
    return frame.drop(columns=["_order", "_neg"]).reset_index(drop=True)


def _resolve_metric(metric: str | None, label: str | None) -> tuple[str, bool]:
    if label is not None:
        chosen = metric or "roc_auc"
        if chosen not in SUPERVISED_METRICS:
            raise ConfigError(
                f"metric {chosen!r} is not a labelled metric; with label= use one of "
                f"{list(SUPERVISED_METRICS)}"
            )
        return chosen, True
    if metric is None or metric == "roc_auc":  # the signature's default
        return DEFAULT_CRITERION, False
    if metric in SUPERVISED_METRICS:
        raise ConfigError(
            f"metric {metric!r} needs labels: name the label column with label=, or use an "
            f"unsupervised criterion: {sorted(CRITERIA)}"
        )
    criterion(metric)  # raises for unknown names
    return metric, False


def _client(client: Client | None) -> Client:
    if client is not None:
        return client
    from distributed import get_client

    try:
        return get_client()
    except ValueError:
        raise ConfigError(
            "adp.search runs its trials on a Dask cluster and found no client: "
            "connect first (client = adp.connect()) or pass client="
        ) from None


def _pick_engine(engine: Engine, supervised: bool, cv: int | None, budget: float | None) -> str:
    fits_dask_ml = supervised and cv is not None and cv >= 2 and budget is None
    if engine == "auto":
        return "dask-ml" if fits_dask_ml else "futures"
    if engine == "dask-ml" and not fits_dask_ml:
        raise ConfigError(
            "engine='dask-ml' runs labelled, cross-validated searches (label=, cv >= 2) "
            "without a time_budget; use engine='futures' or 'auto'"
        )
    if engine not in ("futures", "dask-ml"):
        raise ConfigError(f"engine must be 'auto', 'futures' or 'dask-ml', got {engine!r}")
    return engine


def search(
    ddf: dd.DataFrame,
    space: Any = None,
    label: str | None = None,
    metric: str | None = "roc_auc",
    max_trials: int = 50,
    time_budget: float | None = None,
    cv: int | None = 3,
    sample_rows: int = 100_000,
    random_state: int | None = None,
    *,
    strategy: Strategy = "random",
    features: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    contamination: float = 0.1,
    missing: MissingPolicy = "fail",
    refit: bool = True,
    engine: Engine = "auto",
    client: Client | None = None,
) -> SearchResult:
    """Search detectors and hyperparameters in parallel on the cluster.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data; may carry the label and other non-feature columns.
    space : str, list or mapping, optional
        Detectors and parameter ranges, e.g. ``["isolation_forest", "one_class_svm"]`` or
        ``{"isolation_forest": {"n_estimators": [100, 200], "max_features":
        scipy.stats.uniform(0.5, 0.5)}}``; see :mod:`adp.tuning.space`. Default: the
        standard detectors with their default ranges. Unavailable detectors become
        ``skipped`` rows.
    label : str, optional
        A 0/1 (or boolean) column, 1 = anomaly. Given, candidates are judged by ``metric``
        on held-out folds; omitted, by an unsupervised criterion.
    metric : str
        With a label: ``"roc_auc"`` (default), ``"average_precision"`` or ``"f1"`` (flags
        at the contamination threshold of the training fold). Without: ``"model_centrality"``
        (also what the default ``"roc_auc"`` means without labels) or ``"top_consensus"``.
    max_trials : int
        Candidates to evaluate at most, shared evenly among the detectors.
    time_budget : float, optional
        Seconds from the call: finished trials are kept, unfinished ones cancelled and
        listed as ``cancelled``. The refit of the winner comes after the budget.
    cv : int or None
        Stratified folds for a labelled search; ``None`` or 1 judges each candidate on the
        rows it was fitted on (the transductive protocol of the ODDS benchmarks).
    sample_rows : int
        Size of the uniform search sample (every row when there are fewer).
    random_state : int, optional
        Seeds the sample, the candidates, their ``random_state`` and the folds.
    strategy : {"random", "grid"}
    features : sequence of str, optional
        Feature columns; default every numeric column but ``label`` and ``exclude``.
    exclude : sequence of str
        Columns that are never features.
    contamination : float
        The detectors' contamination (searchable too, as a ``contamination`` range).
    missing : {"fail", "drop", "impute_median"}
        Missing-value policy for the feature columns (see :mod:`adp.io.validate`): the
        trials see the data with it applied, and the refitted winner carries it as fitted
        state (``missing_``, and ``medians_`` for ``impute_median``), so it scores new data
        the same way.
    refit : bool
        Fit the winner on ``ddf`` (same sample size and seed, same ``missing``) before
        returning.
    engine : {"auto", "futures", "dask-ml"}
        See :mod:`adp.tuning.engines`.
    client : distributed.Client, optional
        Default: the current client (:func:`distributed.get_client`).

    Returns
    -------
    SearchResult

    Raises
    ------
    adp.errors.ConfigError
        For a bad space, metric, strategy or engine, or without a cluster.
    adp.errors.DataError
        For a missing column, missing feature values (with ``missing="fail"``), or labels
        unusable for ``cv``.

    Examples
    --------
    >>> result = adp.search(ddf, ["isolation_forest", "hbos"], label="label",
    ...                     max_trials=10, random_state=0)  # doctest: +SKIP
    >>> result.leaderboard.head()  # doctest: +SKIP
    >>> result.register("fraud-detector")  # doctest: +SKIP
    """
    chosen_metric, supervised = _resolve_metric(metric, label)
    if label is not None and label not in ddf.columns:
        raise DataError(
            f"label column {label!r} is not in the data; its columns are {list(ddf.columns)}"
        )
    if time_budget is not None and not time_budget > 0:
        raise ConfigError(f"time_budget must be a positive number of seconds, got {time_budget!r}")
    if cv is not None and cv < 1:
        raise ConfigError(
            f"cv must be a number of folds >= 2, or None or 1 to judge candidates on the "
            f"rows they were fitted on; got {cv!r}"
        )
    if isinstance(check_contamination(contamination), str):
        raise ConfigError("a search needs contamination as a share in (0, 0.5], not 'auto'")
    folds = cv if supervised and cv is not None and cv >= 2 else None
    chosen_engine = _pick_engine(engine, supervised, folds, time_budget)
    client = _client(client)
    started = time.monotonic()
    deadline = None if time_budget is None else started + float(time_budget)

    columns = resolve_features(ddf, features, exclude=[*exclude, *([label] if label else [])])
    trial_frame, _ = apply_missing_policy(ddf, columns, missing)
    candidates = draw_candidates(space, strategy, max_trials, random_state)
    cv_seed = int(np.random.SeedSequence(random_state).generate_state(1)[0] % (2**31 - 1))

    data, size, total = place_sample(client, trial_frame, columns, label, sample_rows, random_state)
    try:
        if supervised:
            rows, anomalies = label_counts(client, data)
            _check_labels(label, rows, anomalies, folds, sample_rows)
        if chosen_engine == "dask-ml":
            assert folds is not None
            outcomes = run_dask_ml(
                client,
                data,
                candidates,
                metric=chosen_metric,
                cv=folds,
                cv_seed=cv_seed,
                contamination=contamination,
            )
            budget_exhausted = False
        else:
            outcomes, budget_exhausted = run_futures(
                client,
                data,
                candidates,
                metric=chosen_metric,
                criterion=None if supervised else chosen_metric,
                cv=folds,
                cv_seed=cv_seed,
                contamination=contamination,
                deadline=deadline,
            )
    finally:
        data.release()
    elapsed = time.monotonic() - started
    board = leaderboard_frame(outcomes)

    best_detector = None
    ok = board[board["status"] == "ok"]
    if not ok.empty:
        params, share = contamination_of(ok.iloc[0]["params"], contamination)
        best_detector = create_detector(ok.iloc[0]["detector"], contamination=share, **params)
        if refit:
            with client.as_current():  # the refit runs where the trials ran
                best_detector.fit(
                    ddf,
                    features=columns,
                    sample_rows=sample_rows,
                    random_state=random_state,
                    missing=missing,
                )
    return SearchResult(
        leaderboard=board,
        best_detector=best_detector,
        metric=chosen_metric,
        supervised=supervised,
        engine=chosen_engine,
        features=columns,
        label=label,
        cv=folds,
        sample_size=size,
        rows_seen=total,
        elapsed_seconds=elapsed,
        budget_exhausted=budget_exhausted,
        random_state=random_state,
    )


def _check_labels(
    label: str | None, rows: int, anomalies: int, folds: int | None, sample_rows: int
) -> None:
    normal = rows - anomalies
    if anomalies == 0 or normal == 0:
        kind = "anomalies (1)" if anomalies == 0 else "normal rows (0)"
        raise DataError(
            f"label column {label!r} has no {kind} in the search sample of {rows} rows: "
            "a labelled search needs both; raise sample_rows or search without label="
        )
    if folds is not None and min(anomalies, normal) < folds:
        raise DataError(
            f"label column {label!r} has {anomalies} anomalies and {normal} normal rows in "
            f"the search sample, fewer than cv={folds} folds need (one of each per fold): "
            f"lower cv or raise sample_rows (now {sample_rows})"
        )


__all__ = ["LEADERBOARD_COLUMNS", "SearchResult", "leaderboard_frame", "search"]

"""Running trials on the cluster: the sample placed once, then futures or dask-ml.

Which engine runs a search (``engine="auto"``):

* **dask-ml** ``GridSearchCV`` for a *labelled, cross-validated search without a time
  budget*. That is exactly what it was built for: one graph in which each (candidate, fold)
  pair is a task, the folds are split once and cached beside the data, and the data is one
  graph key that each worker fetches once. ``RandomizedSearchCV`` is not used: candidates are
  drawn by :mod:`adp.tuning.space` for every engine (so a ``random_state`` names the same
  candidates whichever engine runs them), and ``GridSearchCV`` evaluates that explicit list
  as one-point grids. dask-ml records a failed fit only as ``error_score=nan``; the trial
  estimator therefore reports its exception through the scheduler's event log
  (``Worker.log_event``), and the leaderboard shows it.
* **futures** (:meth:`distributed.Client.submit`, one task per trial) everywhere else.
  dask-ml submits its whole graph and waits for all of it: there is no deadline and no way
  to keep finished trials while cancelling the rest, which ``time_budget`` needs. Nor does
  it fit unsupervised selection, which needs every candidate's scores on the same rows and
  then a criterion computed across candidates (:mod:`adp.tuning.selection`), done here in
  one more task so the score arrays never leave the cluster.

At the time budget the client cancels every unfinished trial future
(:meth:`distributed.Client.cancel`): queued trials never start, and their results are
dropped. A trial already running in a worker thread cannot be interrupted by Dask, so each
trial also checks the deadline between folds and returns early as ``cancelled``; a worker
is busy past the budget by at most one fold's fit.

Both engines use the same sample (placed on every worker with
:meth:`~distributed.Client.replicate` before any trial starts), the same stratified folds
(one seed per search) and the same metric code, so they give the same scores for
deterministic detectors.
"""

from __future__ import annotations

import math
import time
import uuid
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import dask
import dask.dataframe as dd
import numpy as np
from distributed import Client, Future, wait
from sklearn.base import BaseEstimator

from adp.detect.sampling import uniform_sample
from adp.detect.threshold import kth_largest_array
from adp.tuning.selection import judge
from adp.tuning.space import Candidate
from adp.tuning.trials import (
    SearchData,
    TrialOutcome,
    build_search_data,
    contamination_of,
    fit_candidate,
    run_trial,
    supervised_score,
)

Engine = Literal["auto", "futures", "dask-ml"]


def place_sample(
    client: Client,
    ddf: dd.DataFrame,
    features: list[str],
    label: str | None,
    sample_rows: int,
    random_state: int | None,
) -> tuple[Future, int, int]:
    """Draw the search sample on the workers and put a copy on every worker.

    Returns
    -------
    future : distributed.Future
        Resolves to a :class:`~adp.tuning.trials.SearchData`; trials take it as an argument,
        so the sample is never shipped with a task.
    size, total : int
        Rows in the sample and in the dataset.

    Raises
    ------
    adp.errors.DataError
        From the workers, for missing feature values or a label that is not 0/1.
    """
    columns = list(dict.fromkeys([*features, *([label] if label else [])]))
    parts, size, total = uniform_sample(ddf[columns], sample_rows, random_state)
    data = dask.delayed(build_search_data, pure=False)(
        parts, features, label, dask_key_name=f"adp-search-sample-{uuid.uuid4().hex}"
    )
    future = client.compute(data)
    with client.as_current():  # distributed.wait uses the default client
        wait(future)
    if future.status == "error":
        raise future.exception()
    client.replicate([future])
    return future, size, total


def _label_counts(data: SearchData) -> tuple[int, int]:
    return data.n_rows, int(data.n_anomalies or 0)


def label_counts(client: Client, data: Future) -> tuple[int, int]:
    """Rows and anomalies in the placed sample (one small round trip)."""
    rows, anomalies = client.submit(_label_counts, data, pure=False).result()
    return int(rows), int(anomalies)


def run_futures(
    client: Client,
    data: Future,
    candidates: Sequence[Candidate],
    *,
    metric: str,
    criterion: str | None,
    cv: int | None,
    cv_seed: int,
    contamination: float,
    deadline: float | None,
) -> tuple[list[TrialOutcome], bool]:
    """Run each runnable candidate as one task; stop at ``deadline`` (``time.monotonic``).

    Parameters
    ----------
    criterion : str or None
        For an unsupervised ``metric``: the criterion computed in one more task on the
        cluster, so only small outcomes return. ``None`` returns unsupervised outcomes with
        their score arrays (the selection benchmark judges them by the true labels).

    Returns
    -------
    outcomes : list of TrialOutcome
        One per candidate, in candidate order.
    budget_exhausted : bool
        Whether the deadline cut the search short.
    """
    search_id = uuid.uuid4().hex[:12]
    # Workers check the wall clock between folds; the client enforces the monotonic one.
    wall_deadline = None if deadline is None else time.time() + (deadline - time.monotonic())
    submitted: dict[int, Future] = {}
    for candidate in candidates:
        if candidate.skip_reason is None:
            submitted[candidate.trial] = client.submit(
                run_trial,
                data,
                candidate,
                metric,
                cv,
                cv_seed,
                contamination,
                wall_deadline,
                key=f"adp-trial-{search_id}-{candidate.trial}",
                pure=False,
            )
    exhausted = False
    if submitted:
        timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            with client.as_current():  # distributed.wait uses the default client
                wait(list(submitted.values()), timeout=timeout)
        except TimeoutError:
            exhausted = True
    unfinished = [f for f in submitted.values() if not f.done()]
    if unfinished:
        exhausted = True
        client.cancel(unfinished)

    finished = {t: f for t, f in submitted.items() if f.status == "finished"}
    results: dict[int, TrialOutcome] = {}
    if finished:
        if criterion is not None:  # judge where the score arrays are; only summaries return
            judged = client.submit(judge, list(finished.values()), criterion, pure=False)
            results = {o.trial: o for o in judged.result()}
        else:
            results = {o.trial: o for o in client.gather(list(finished.values()))}

    outcomes = []
    for candidate in candidates:
        future = submitted.get(candidate.trial)
        if candidate.skip_reason is not None:
            outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
            outcome.status, outcome.error = "skipped", candidate.skip_reason
        elif candidate.trial in results:
            outcome = results[candidate.trial]
        elif future is not None and future.status == "error":
            outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
            exc = future.exception()
            outcome.status, outcome.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
            outcome.status = "cancelled"
            outcome.error = "the time budget ran out before this trial finished"
        outcomes.append(outcome)
    return outcomes, exhausted


class TrialEstimator(BaseEstimator):
    """A scikit-learn estimator over ADP detectors, for dask-ml's ``GridSearchCV``.

    Parameters
    ----------
    trial : int
        The candidate's number (to attribute errors).
    detector : str
        Detector name.
    params : dict
        The detector's parameters.
    contamination : float
        Default contamination (a ``contamination`` entry in ``params`` wins).
    topic : str
        Scheduler event topic that collects fit errors.
    needs_threshold : bool
        Compute the contamination threshold of the training scores (for ``f1``).
    seed : int
        Seed of the row cap of quadratic detectors (the search's fold seed).
    """

    def __init__(
        self,
        trial: int = 0,
        detector: str = "isolation_forest",
        params: dict[str, Any] | None = None,
        contamination: float = 0.1,
        topic: str = "adp-search-errors",
        needs_threshold: bool = False,
        seed: int = 0,
    ) -> None:
        self.trial = trial
        self.detector = detector
        self.params = params
        self.contamination = contamination
        self.topic = topic
        self.needs_threshold = needs_threshold
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> TrialEstimator:
        params, share = contamination_of(self.params or {}, self.contamination)
        try:
            self.scorer_, self.fit_seconds_ = fit_candidate(
                self.detector, params, share, X, self.seed
            )
            self.threshold_ = (
                kth_largest_array(self.scorer_.decision_function(X), share)
                if self.needs_threshold
                else None
            )
        except Exception as exc:
            _log_error(self.topic, self.trial, exc)
            raise
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.scorer_.decision_function(X), dtype=np.float64)


def _report_client(client: Client, **figures: float) -> None:
    try:
        from adp.observe.events import report_client
    except ImportError:  # pragma: no cover - observe ships with adp
        return
    report_client(client, **figures)


def _log_error(topic: str, trial: int, exc: BaseException) -> None:
    try:
        from distributed import get_worker

        get_worker().log_event(topic, {"trial": trial, "error": f"{type(exc).__name__}: {exc}"})
    except ValueError:  # not on a worker
        pass


class MetricScorer:
    """``scoring=`` callable for dask-ml: the metric of the estimator's held-out scores."""

    def __init__(self, metric: str) -> None:
        self.metric = metric

    def __call__(self, estimator: TrialEstimator, X: np.ndarray, y: np.ndarray) -> float:
        scores = estimator.decision_function(X)
        return supervised_score(self.metric, y, scores, estimator.threshold_)


def run_dask_ml(
    client: Client,
    data: Future,
    candidates: Sequence[Candidate],
    *,
    metric: str,
    cv: int,
    cv_seed: int,
    contamination: float,
) -> list[TrialOutcome]:
    """Cross-validate the runnable candidates with dask-ml's ``GridSearchCV``."""
    from dask_ml.model_selection import GridSearchCV
    from sklearn.model_selection import StratifiedKFold

    runnable = [c for c in candidates if c.skip_reason is None]
    results: dict[int, TrialOutcome] = {}
    if runnable:
        topic = f"adp-search-errors-{uuid.uuid4().hex[:12]}"
        estimator = TrialEstimator(
            contamination=contamination,
            topic=topic,
            needs_threshold=metric == "f1",
            seed=cv_seed,
        )
        grid = [
            {"trial": [c.trial], "detector": [c.detector], "params": [dict(c.params)]}
            for c in runnable
        ]
        X = dask.delayed(getattr)(data, "X")
        y = dask.delayed(getattr)(data, "y")
        gs = GridSearchCV(
            estimator,
            grid,
            scoring=MetricScorer(metric),
            cv=StratifiedKFold(n_splits=cv, shuffle=True, random_state=cv_seed),
            refit=False,
            error_score=np.nan,
            return_train_score=False,
            scheduler=client,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nan ranks of failed candidates
            gs.fit(X, y)
        errors = {int(msg["trial"]): str(msg["error"]) for _, msg in client.get_events(topic)}
        cv_results = gs.cv_results_
        for i, candidate in enumerate(runnable):
            outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
            outcome.score = float(cv_results["mean_test_score"][i])
            outcome.score_std = float(cv_results["std_test_score"][i])
            fit_time = float(cv_results["mean_fit_time"][i])
            outcome.fit_seconds = fit_time
            outcome.trial_seconds = (fit_time + float(cv_results["mean_score_time"][i])) * cv
            if math.isnan(outcome.score):
                outcome.status = "failed"
                outcome.score_std = math.nan
                outcome.error = errors.get(
                    candidate.trial, "the fit failed on a worker (dask-ml recorded no message)"
                )
            results[candidate.trial] = outcome
        _report_client(client, search_trials=len(runnable))

    outcomes = []
    for candidate in candidates:
        if candidate.trial in results:
            outcomes.append(results[candidate.trial])
        else:
            outcome = TrialOutcome(candidate.trial, candidate.detector, dict(candidate.params))
            outcome.status, outcome.error = "skipped", candidate.skip_reason
            outcomes.append(outcome)
    return outcomes


__all__ = [
    "Engine",
    "MetricScorer",
    "TrialEstimator",
    "label_counts",
    "place_sample",
    "run_dask_ml",
    "run_futures",
]

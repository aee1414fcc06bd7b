"""``adp.search``: find a good detector and its hyperparameters on the cluster.

A search draws one uniform sample of the data on the workers, places it on every worker,
then runs one task per candidate (see :mod:`adp.tuning.engines` for which engine runs them
and why). With ``label=`` each candidate is cross-validated against the labels; without,
and without a ``space``, the learned selector chooses (:mod:`adp.tuning.selector`, falling
back to the default isolation forest when it is not confident); with a ``space``,
candidates are compared with each other by an unsupervised criterion
(:mod:`adp.tuning.selection`). The winner is refitted the ordinary way
(:meth:`adp.Detector.fit`) and can be registered with :mod:`adp.models`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import dask.dataframe as dd
import numpy as np
from distributed import Client

from adp.context.fitted import fit_context
from adp.context.spec import Context
from adp.detect.detector import create_detector
from adp.detect.features import resolve_features
from adp.detect.threshold import check_contamination
from adp.errors import ConfigError, DataError
from adp.io.validate import MissingPolicy, apply_missing_policy
from adp.tuning.engines import Engine, label_counts, place_sample, run_dask_ml, run_futures
from adp.tuning.results import LEADERBOARD_COLUMNS, SearchResult, leaderboard_frame
from adp.tuning.selection import CRITERIA, DEFAULT_CRITERION, criterion
from adp.tuning.selector_search import SELECTOR, selector_result
from adp.tuning.space import Strategy, draw_candidates
from adp.tuning.trials import SUPERVISED_METRICS, contamination_of


def _resolve_metric(metric: str | None, label: str | None, space: Any = None) -> tuple[str, bool]:
    if label is not None:
        chosen = metric or "roc_auc"
        if chosen not in SUPERVISED_METRICS:
            raise ConfigError(
                f"metric {chosen!r} is not a labelled metric; with label= use one of "
                f"{list(SUPERVISED_METRICS)}"
            )
        return chosen, True
    if metric is None or metric == "roc_auc":  # the signature's default
        return (SELECTOR if space is None else DEFAULT_CRITERION), False
    if metric == SELECTOR:
        return SELECTOR, False
    if metric in SUPERVISED_METRICS:
        raise ConfigError(
            f"metric {metric!r} needs labels: name the label column with label=, or use an "
            f"unsupervised criterion: {sorted([*CRITERIA, SELECTOR])}"
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
    context: Context | Mapping[str, Any] | None = None,
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
        at the contamination threshold of the training fold). Without: ``"selector"``
        (what the default ``"roc_auc"`` means without labels and without ``space``: the
        learned selector of :mod:`adp.tuning.selector`; ``space`` may then only name
        detectors), ``"model_centrality"`` (the default without labels when ``space`` is
        given) or ``"top_consensus"``.
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
    context : Context or mapping, optional
        Per-entity, time-aware features and encodings (:class:`adp.Context`, as the
        ``context`` parameter of :func:`adp.create_detector`): fitted once on ``ddf``, its
        features are what the trials (or the selector) see, and the winner carries it,
        so it scores raw rows as a detector fitted with that context does.

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
    chosen_metric, supervised = _resolve_metric(metric, label, space)
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

    parsed = None if context is None else Context.from_spec(context)
    excluded = [*exclude, *([label] if label else [])]
    if parsed is not None:
        excluded += parsed.used_columns()
    columns = resolve_features(ddf, features, exclude=excluded, key=(), context=parsed)
    searched, searched_columns = with_context(ddf, parsed, columns, label, sample_rows)
    trial_frame, _ = apply_missing_policy(searched, searched_columns, missing)
    if chosen_metric == SELECTOR:
        return selector_result(
            ddf,
            trial_frame,
            searched_columns,
            fit_columns=columns,
            context=parsed,
            space=space,
            sample_rows=sample_rows,
            random_state=random_state,
            contamination=contamination,
            missing=missing,
            refit=refit,
            client=client,
            started=started,
        )
    candidates = draw_candidates(space, strategy, max_trials, random_state)
    cv_seed = int(np.random.SeedSequence(random_state).generate_state(1)[0] % (2**31 - 1))

    data, size, total = place_sample(
        client, trial_frame, searched_columns, label, sample_rows, random_state
    )
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
        if parsed is not None:
            params = {**params, "context": parsed}
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


def with_context(
    ddf: dd.DataFrame,
    context: Context | None,
    columns: list[str],
    label: str | None,
    sample_rows: int,
) -> tuple[dd.DataFrame, list[str]]:
    """The frame the trials see and its feature columns: ``ddf`` and ``columns`` as they
    are, or, with a ``context``, its features fitted once on ``ddf`` (the label kept)."""
    if context is None:
        return ddf, columns
    fitted = fit_context(context, ddf, columns, sample_rows=sample_rows)
    used = [*context.used_columns(), *columns, *([label] if label else [])]
    return fitted.transform(ddf[list(dict.fromkeys(used))]), list(fitted.feature_names)


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

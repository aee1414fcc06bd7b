"""The ``selector`` path of :func:`adp.search`: an unlabelled search chosen by the learned
selector (:mod:`adp.tuning.selector`) instead of fitting and comparing every candidate.

This is what ``adp.search(ddf)`` without labels and without a space does, and what a job's
``search:`` section without ``label`` and ``space`` does. The leaderboard lists the choice
first (the default isolation forest when the selector falls back), then the other
candidates by the selector's utility; ``score`` is that utility (expected ROC-AUC gain over
the default, net of risk). Nothing but the choice is fitted on the whole sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from adp.context.spec import Context
from adp.detect.base import BaseDetector
from adp.detect.detector import create_detector
from adp.errors import ConfigError, DetectorError
from adp.io.validate import MissingPolicy
from adp.tuning.perftable import CANDIDATES, DEFAULT_ID, candidate_for
from adp.tuning.results import SearchResult
from adp.tuning.selecting import select_detector
from adp.tuning.selector import Selection

SELECTOR = "selector"
"""The metric name of the learned selector."""


def allowed_candidates(space: Any) -> list[str] | None:
    """The selection candidates a ``space`` allows: all for ``None``; for detector names,
    the candidates of those detectors.

    Raises
    ------
    adp.errors.ConfigError
        For a space with parameter ranges, or detectors without candidates in the table.
    """
    from adp.detect.registry import detector_info

    if space is None:
        return None
    names = [space] if isinstance(space, str) else space
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            "metric 'selector' chooses among the candidates of its performance table: give "
            "space=None or a list of detector names (parameter ranges are not searched)"
        )
    wanted = {detector_info(n).name for n in names}
    allowed = [cid for cid, detector, _ in CANDIDATES if detector in wanted]
    known = sorted({detector for _, detector, _ in CANDIDATES})
    missing = sorted(wanted - {detector for _, detector, _ in CANDIDATES})
    if missing:
        raise ConfigError(
            f"the selector has no evidence for {missing}; its detectors are {known} "
            "(or use metric='model_centrality' to compare any candidates)"
        )
    return allowed


def selection_board(selection: Selection, random_state: int | None) -> pd.DataFrame:
    """The leaderboard of a selector search: the choice first, then by utility."""
    ids = list(selection.utilities)
    order = sorted(ids, key=lambda c: (c != selection.choice, -selection.utilities[c]))
    rows = []
    for cid in order:
        candidate = candidate_for(cid, random_state, trial=ids.index(cid))
        rows.append(
            {
                "trial": candidate.trial,
                "detector": candidate.detector,
                "params": dict(candidate.params),
                "score": float(selection.utilities[cid]),
                "score_std": np.nan,
                "fit_seconds": np.nan,
                "trial_seconds": np.nan,
                "status": "ok",
                "error": None,
            }
        )
    return pd.DataFrame(rows)


def selector_search(
    ddf: Any,
    trial_frame: Any,
    columns: list[str],
    *,
    space: Any,
    sample_rows: int,
    random_state: int | None,
    contamination: float,
    missing: MissingPolicy,
    refit: bool,
    client: Any,
    fit_columns: list[str] | None = None,
    context: Context | None = None,
) -> tuple[pd.DataFrame, BaseDetector, Selection]:
    """Choose with the selector, then build (and refit) the chosen detector.

    A chosen detector that fails to fit falls back to the default isolation forest; the
    selection's ``reason`` says so. With a ``context``, ``trial_frame`` and ``columns``
    hold its features, and the chosen detector carries it and is refitted on ``ddf``'s
    ``fit_columns``.
    """
    extra: dict[str, Any] = {} if context is None else {"context": context}
    inputs = columns if fit_columns is None else fit_columns
    allowed = allowed_candidates(space)
    selection = select_detector(
        trial_frame, columns, None, random_state, allowed=allowed, client=client
    )
    detector = create_detector(
        selection.detector, contamination=contamination, **selection.params, **extra
    )
    if refit:
        try:
            _fit(detector, ddf, inputs, sample_rows, random_state, missing, client)
        except DetectorError as exc:
            if selection.choice == DEFAULT_ID:
                raise
            default = candidate_for(DEFAULT_ID, random_state)
            selection.reason = f"fallback: {selection.choice} failed to fit ({exc})"
            selection.choice, selection.fallback = DEFAULT_ID, True
            selection.detector, selection.params = default.detector, dict(default.params)
            detector = create_detector(
                default.detector, contamination=contamination, **default.params, **extra
            )
            _fit(detector, ddf, inputs, sample_rows, random_state, missing, client)
    return selection_board(selection, random_state), detector, selection


def selector_result(
    ddf: Any,
    trial_frame: Any,
    columns: list[str],
    *,
    space: Any,
    sample_rows: int,
    random_state: int | None,
    contamination: float,
    missing: MissingPolicy,
    refit: bool,
    client: Any,
    started: float,
    fit_columns: list[str] | None = None,
    context: Context | None = None,
) -> SearchResult:
    """:func:`selector_search` as a :class:`~adp.tuning.results.SearchResult`; the
    selection (choice, reason, confidence, meta-features) is ``extra["selection"]`` and is
    stored with a registered model's metrics."""
    board, detector, selection = selector_search(
        ddf,
        trial_frame,
        columns,
        space=space,
        sample_rows=sample_rows,
        random_state=random_state,
        contamination=contamination,
        missing=missing,
        refit=refit,
        client=client,
        fit_columns=fit_columns,
        context=context,
    )
    meta = selection.metafeatures
    return SearchResult(
        leaderboard=board,
        best_detector=detector,
        metric=SELECTOR,
        supervised=False,
        engine="selector",
        features=columns if fit_columns is None else fit_columns,
        label=None,
        cv=None,
        sample_size=meta.landmark_rows,
        rows_seen=meta.rows,
        elapsed_seconds=time.monotonic() - started,
        budget_exhausted=False,
        random_state=random_state,
        extra={"selection": selection.as_dict()},
    )


def _fit(
    detector: BaseDetector,
    ddf: Any,
    columns: list[str],
    sample_rows: int,
    random_state: int | None,
    missing: MissingPolicy,
    client: Any,
) -> None:
    with client.as_current():
        detector.fit(
            ddf,
            features=columns,
            sample_rows=sample_rows,
            random_state=random_state,
            missing=missing,
        )


__all__ = [
    "SELECTOR",
    "allowed_candidates",
    "selection_board",
    "selector_result",
    "selector_search",
]

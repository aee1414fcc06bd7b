"""What a search returns: :class:`SearchResult` and its leaderboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from adp.detect.base import BaseDetector
from adp.errors import DataError
from adp.tuning.trials import TrialOutcome

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
        ``"dask-ml"``, ``"futures"`` or ``"selector"`` (the learned selector chose).
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
            **({"selection": self.extra["selection"]} if "selection" in self.extra else {}),
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


__all__ = ["LEADERBOARD_COLUMNS", "SearchResult", "leaderboard_frame"]

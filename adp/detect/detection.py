"""One score path for notebooks, jobs and streams: prepare, score, stage, threshold, flag,
explain.

:func:`run_detection` is what :meth:`adp.detect.base.BaseDetector.detect` runs and what the
job runner runs; they differ only in the :class:`ScoreStage`, which says where the raw
scores live between scoring and flagging:

- :class:`InMemoryStage` (notebooks, the default): one lazy graph; the threshold's passes and
  the flags share the scored partitions, so one ``compute`` scores each partition once;
- a job's stage writes the raw scores to staging files, and its ``step`` computes each pass
  of the global threshold eagerly over those files, so memory does not grow with the rows.

Follows dask-ml's ``ParallelPostFit``: the fitted model travels to the workers once, as a
single graph key (:meth:`~adp.detect.base.BaseDetector.model_ref`), and module-level
partition functions score one task per input partition.

A small frame of one in-memory partition (:mod:`adp.detect.local`) skips the cluster: the
same graph is computed at once in this process, with the same results.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect import local
from adp.detect.explain import FittedModel, explain_flagged
from adp.detect.features import feature_matrix, resolve_features
from adp.detect.scorers import Scorer
from adp.detect.shipping import in_process
from adp.detect.threshold import Step, Threshold, flag
from adp.errors import DetectorError
from adp.observe.events import report

__all__ = [
    "Detection",
    "InMemoryStage",
    "ScoreStage",
    "Step",
    "raw_scores",
    "run_detection",
    "shared_partitions",
]


class Detectable(FittedModel, Protocol):
    """What :func:`run_detection` needs of a fitted detector (any
    :class:`~adp.detect.base.BaseDetector`)."""

    def prepare(self, ddf: dd.DataFrame) -> dd.DataFrame: ...

    def threshold_rule(self, threshold: Threshold | float | str | None = None) -> Threshold: ...


class ScoreStage(Protocol):
    """Where raw scores live between scoring and flagging.

    Attributes
    ----------
    step : callable or None
        Computes one pass of the global threshold eagerly (a job:
        ``lambda d: client.compute(d).result()``), or ``None``: the whole detection is one
        lazy graph.
    """

    step: Step | None

    def stage(self, raw: dd.DataFrame) -> dd.DataFrame:
        """Stage the raw scores.

        Parameters
        ----------
        raw : dask.dataframe.DataFrame
            Lazy: the input's index, the key columns and ``score`` (float64), one partition
            per input partition.

        Returns
        -------
        dask.dataframe.DataFrame
            The same columns and partitions, lazily (in memory: shared partitions; a job:
            computes the writes of the raw scores to staging files and returns a frame that
            re-reads them).
        """
        ...

    def staged_scores(self, staged: dd.DataFrame) -> dd.Series:
        """The score column the global threshold is computed on (a job may regroup its
        files into fewer partitions)."""
        ...


def shared_partitions(frame: dd.DataFrame) -> dd.DataFrame:
    """``frame`` rebuilt on its own optimised partition tasks.

    The global threshold and the flags are two graphs over the same scores. Built on
    ``frame`` itself, each is optimised on its own, dask fuses the scoring into different
    tasks, and every partition is read and scored twice. Built on the partitions of
    ``frame.to_delayed()``, both depend on the same keys, so one ``compute`` scores each
    partition once, and holds only its small score frame until the flags are done.
    """
    # Optimised first: dask may fuse partitions while optimising (a column projection of a
    # Parquet read makes small files one partition), so the divisions are taken from the
    # optimised frame, whose partitions to_delayed returns.
    # verify_meta=True: dask's from_delayed without it emits self-referencing aliases that
    # dask.array's fusion rejects (KeyError 'pop from an empty set' in to_xarray).
    frame = frame.optimize()
    return dd.from_delayed(
        frame.to_delayed(),
        meta=frame._meta,
        divisions=frame.divisions,
        verify_meta=True,
    )


class InMemoryStage:
    """The default stage (notebooks): raw scores stay in the graph, scored once.

    ``stage`` is :func:`shared_partitions`, ``staged_scores`` the ``score`` column and
    ``step`` ``None``, so :func:`run_detection` returns one lazy graph.
    """

    step: Step | None = None

    def stage(self, raw: dd.DataFrame) -> dd.DataFrame:
        """The raw scores on shared partition tasks (:func:`shared_partitions`)."""
        return shared_partitions(raw)

    def staged_scores(self, staged: dd.DataFrame) -> dd.Series:
        """The ``score`` column of ``staged``."""
        return staged["score"]


@dataclass
class Detection:
    """What :func:`run_detection` returns.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
        Lazy: the key columns, ``score`` (float64), ``is_anomaly`` (bool) and, when
        explanations were asked for, ``top_features``; one partition per input partition.
    threshold : float or Delayed
        The global threshold: a float when the stage has a ``step``, else lazy.
    """

    frame: dd.DataFrame
    threshold: float | Delayed


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
        out["score"] = np.asarray(scorer.decision_function(X), dtype=np.float64)
    else:
        out["score"] = np.empty(0, dtype=np.float64)
    report(rows_scored=len(part), partition_score_seconds=time.perf_counter() - started)
    return out


def raw_scores(
    detector: FittedModel, prepared: dd.DataFrame, key: Sequence[str] | None = None
) -> dd.DataFrame:
    """Raw scores, lazily: the index, the ``key`` columns and ``score`` (float64).

    Parameters
    ----------
    detector : BaseDetector
        Fitted.
    prepared : dask.dataframe.DataFrame
        Rows to score, the detector's missing-value policy already applied
        (:meth:`~adp.detect.base.BaseDetector.prepare`).
    key : sequence of str, optional
        Columns carried into the result.

    Returns
    -------
    dask.dataframe.DataFrame
        One task per input partition. A row's score depends only on the fitted model and
        the row, never on the partition it is in.
    """
    detector.check_fitted()
    key_columns = list(key or [])
    resolve_features(prepared, detector.features_, key=key_columns)
    if key_columns:
        meta = prepared._meta[key_columns].copy()
    else:
        meta = pd.DataFrame(index=prepared._meta.index)
    meta["score"] = np.empty(0, dtype=np.float64)
    return prepared.map_partitions(
        _score_partition,
        detector.model_ref(),
        list(detector.features_),
        key_columns,
        meta=meta,
        enforce_metadata=False,
        align_dataframes=False,
    )


def run_detection(
    detector: Detectable,
    ddf: dd.DataFrame,
    *,
    key: Sequence[str] | None = None,
    threshold: Threshold | float | str | None = None,
    explain: int = 0,
    explain_method: str = "auto",
    stage: ScoreStage | None = None,
) -> Detection:
    """Score every row of ``ddf`` and flag anomalies against one global threshold.

    Applies the detector's stored missing-value policy (with its fit-time medians), scores
    each partition in one task, stages the raw scores (``stage.stage``), resolves the
    threshold on ``stage.staged_scores(staged)`` (pass by pass with ``stage.step``), flags
    the staged rows and, with ``explain > 0``, adds ``top_features`` to the flagged ones.

    Parameters
    ----------
    detector : BaseDetector
        Fitted.
    ddf : dask.dataframe.DataFrame
        Rows to score; must carry the fitted feature columns and ``key``.
    key : sequence of str, optional
        Columns carried into the result so it joins back to the input (the index is
        always kept).
    threshold : Threshold, float or "auto", optional
        ``None``: the detector's own rule (:meth:`BaseDetector.threshold_rule`); a float:
        a fixed score; ``"auto"``: a robust rule; or any :class:`Threshold`.
    explain : int
        With ``explain > 0``, the ``explain`` most contributing feature names of each
        flagged row (``None`` for the others).
    explain_method : {"auto", "native", "ablation"}
        How features are ranked (:mod:`adp.detect.explain`).
    stage : ScoreStage, optional
        Default :class:`InMemoryStage`.

    Returns
    -------
    Detection
        The lazy flagged frame and the threshold (a float when ``stage.step`` is given).
        Without a ``stage``, a small in-memory frame of one partition (see
        :mod:`adp.detect.local`) is scored at once, in this process: the frame is then an
        in-memory dask frame and the threshold a float, equal to the cluster's.

    Raises
    ------
    adp.errors.NotFittedError
        Before :meth:`fit`.
    adp.errors.DetectorError
        For a negative ``explain``.
    adp.errors.DataError
        Missing feature or key columns (at once); missing values under the ``fail``
        policy (when computed, naming the partition and column).
    """
    explain = int(explain or 0)
    if explain < 0:
        raise DetectorError(f"explain must be 0 (none) or a positive top_k, got {explain!r}")
    if stage is None and getattr(detector, "context_", None) is None and local.runs_locally(ddf):
        return _run_in_process(detector, ddf, key, threshold, explain, explain_method)
    return _plan_detection(detector, ddf, key, threshold, explain, explain_method, stage)


def _run_in_process(
    detector: Detectable,
    ddf: dd.DataFrame,
    key: Sequence[str] | None,
    threshold: Threshold | float | str | None,
    explain: int,
    explain_method: str,
) -> Detection:
    """:func:`run_detection` of a small in-memory frame (:mod:`adp.detect.local`): the same
    graph, computed at once with the synchronous scheduler, as an in-memory frame."""
    with in_process():
        planned = _plan_detection(detector, ddf, key, threshold, explain, explain_method, None)
    # the frame's partitions as delayed: one graph with the threshold, scored once
    parts, value = dask.compute(planned.frame.to_delayed(), planned.threshold, scheduler="sync")
    frame = parts[0] if len(parts) == 1 else pd.concat(parts)
    # The planned meta and divisions, and no conversion of object columns to strings
    # (top_features holds lists), so the frame is the one the cluster would have returned.
    with dask.config.set({"dataframe.convert-string": False}):
        out = dd.from_delayed(
            [dask.delayed(frame, name=f"adp-detected-{uuid.uuid4().hex}")],  # not hashed
            meta=planned.frame._meta,
            divisions=(planned.frame.divisions[0], planned.frame.divisions[-1]),
            verify_meta=True,
        )
    return Detection(out, float(value))


def _plan_detection(
    detector: Detectable,
    ddf: dd.DataFrame,
    key: Sequence[str] | None,
    threshold: Threshold | float | str | None,
    explain: int,
    explain_method: str,
    stage: ScoreStage | None,
) -> Detection:
    """:func:`run_detection`'s lazy graph (its parameters checked)."""
    stage = stage if stage is not None else InMemoryStage()
    prepared = detector.prepare(ddf)
    raw = raw_scores(detector, prepared, key)
    staged = stage.stage(raw)
    rule = detector.threshold_rule(threshold)
    resolved = rule.resolve(stage.staged_scores(staged), step=stage.step)
    value: float | Delayed = resolved if stage.step is None else float(stage.step(resolved))
    flagged = flag(staged, value)
    if explain > 0:
        flagged = explain_flagged(prepared, flagged, detector, explain, explain_method)
    return Detection(flagged, value)

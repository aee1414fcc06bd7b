"""Decoding and scoring a micro-batch on a worker, through the batch path itself.

:func:`decode_and_score` runs as one task per micro-batch: it decodes the raw messages
(:func:`adp.stream.decode.decode`; JSON parsing is the costliest step per event, so it is
spread over the workers rather than done by the consumer) and scores the good rows with
:func:`score_batch`.

:func:`score_batch` wraps the rows as a one-partition dask DataFrame and scores it with
:func:`adp.detect.detection.raw_scores` after the detector's own missing-value policy
(:meth:`~adp.detect.base.BaseDetector.prepare`), computed in the task's thread: the same
per-partition scoring function, with the same fitted scorer and feature matrix, that batch
jobs and ``detector.detect`` run on each partition. A row therefore gets the same score in
a stream as in a batch job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.detect.detection import raw_scores
from adp.stream.brokers.protocol import Message
from adp.stream.decode import decode

__all__ = ["decode_and_score", "score_batch"]


def score_batch(frame: pd.DataFrame, detector: Any, key: Sequence[str] = ()) -> pd.DataFrame:
    """Score decoded rows with the batch path.

    Parameters
    ----------
    frame : pandas.DataFrame
        Indexed by message id, with the detector's feature columns and ``key``.
    detector : BaseDetector
        Fitted.
    key : sequence of str
        Columns carried into the result.

    Returns
    -------
    pandas.DataFrame
        Indexed by message id, in the batch's order: the ``key`` columns and ``score``
        (float64). Rows the detector's ``drop`` policy leaves out are absent.
    """
    if not len(frame):
        out = frame[list(key)].copy()
        out["score"] = np.empty(0, dtype=np.float64)
        return out
    ddf = dd.from_pandas(frame, npartitions=1, sort=False)
    scored = raw_scores(detector, detector.prepare(ddf), list(key))
    result: pd.DataFrame = scored.compute(scheduler="sync")
    return result


def decode_and_score(
    messages: Sequence[Message], detector: Any, key: Sequence[str] = ()
) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Decode and score one micro-batch (runs on a worker).

    Parameters
    ----------
    messages : sequence of Message
        The batch, as the broker delivered it.
    detector : BaseDetector
        Fitted (scattered to the workers once by the runner).
    key : sequence of str
        Event fields carried into the results.

    Returns
    -------
    scored : pandas.DataFrame
        As :func:`score_batch` returns, for the messages that decoded.
    dead : list of (str, str)
        ``(message_id, reason)`` of the others, in delivery order.
    """
    impute = getattr(detector, "missing_", "fail") == "impute_median"
    decoded = decode(messages, detector.features_, key, impute=impute)
    dead = [(d.message.id, d.reason) for d in decoded.dead]
    return score_batch(decoded.frame, detector, key), dead

"""Decoding and scoring a micro-batch on a worker, with the batch path's partition functions.

:func:`decode_and_score` runs as one task per micro-batch (a plain function submitted with
``client.submit``, no dask graph): it decodes the payloads
(:func:`adp.stream.decode.decode_rows`; JSON parsing is the costliest step per event, so it
is spread over the workers rather than done by the consumer) and scores the good rows with
:func:`score_batch`. :func:`score_rows` scores rows the consumer decoded itself (a stream
with per-key windows, whose features depend on the order of events).

:func:`score_batch` applies the detector's missing-value policy and scores the rows with the
very partition functions that ``detector.prepare(ddf)`` and
:func:`adp.detect.detection.raw_scores` map over each partition of a batch job, called
directly on the one partition the micro-batch is: the same fitted scorer, the same feature
matrix (C order, float64), the same policy with the fit-time medians. A row therefore gets
the same score in a stream as in a batch job. (Wrapping the rows as a one-partition dask
DataFrame and computing it did the same, for ~25 ms per batch of graph building.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# The batch path's own per-partition functions: calling them (not copies) keeps a stream's
# scores identical to a batch job's, whatever they come to do.
from adp.detect.detection import _score_partition
from adp.io.validate import _drop_partition, _fail_partition, _impute_partition
from adp.stream.context_features import add_context, stream_inputs
from adp.stream.decode import Rows, decode_rows

__all__ = ["Payloads", "Scored", "decode_and_score", "score_batch", "score_rows", "warm_up"]


class Payloads:
    """A micro-batch's raw payloads on their way to a worker: one byte array and where
    each payload ends.

    The shape is for dask. A task's list, tuple, dict and dataclass arguments are walked
    element by element for futures and keys (on the client and again on the scheduler:
    ~250 ms per batch of 5,000 payloads as a dataclass on this machine), other objects are
    not; and a NumPy array travels as an out-of-band buffer, which the scheduler (which
    unpickles every task it receives) neither copies nor parses: ~10 ms less of its CPU per
    batch of 5,000 than a list of bytes.

    Parameters
    ----------
    data : sequence of bytes
        The payloads, in delivery order.
    """

    __slots__ = ("blob", "ends")

    def __init__(self, data: Sequence[bytes]) -> None:
        self.blob = np.frombuffer(b"".join(data), dtype=np.uint8)
        self.ends = np.cumsum(np.fromiter(map(len, data), dtype=np.int64, count=len(data)))

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def data(self) -> list[bytes]:
        """The payloads, in delivery order."""
        raw = self.blob.tobytes()
        ends = self.ends.tolist()
        return [raw[start:end] for start, end in zip([0, *ends][:-1], ends, strict=True)]


@dataclass(frozen=True, slots=True)
class Scored:
    """What a worker sends back for a micro-batch.

    Attributes
    ----------
    frame : pandas.DataFrame
        Indexed by position in the batch (int64), in delivery order: the key columns and
        ``score`` (float64), for the rows that decoded and that the detector's policy kept.
    dead : list of (int, str)
        ``(position, reason)`` of the payloads that could not be decoded.
    """

    frame: pd.DataFrame
    dead: list[tuple[int, str]]


def _prepare(part: pd.DataFrame, detector: Any) -> pd.DataFrame:
    """The detector's missing-value policy on one partition (what ``detector.prepare``
    maps over a dask DataFrame's partitions)."""
    features = list(detector.features_)
    policy = getattr(detector, "missing_", "fail")
    if policy == "impute_median":
        return _impute_partition(part, features, dict(detector.medians_))
    if policy == "drop":
        return _drop_partition(part, features)
    return _fail_partition(part, features)


def score_batch(frame: pd.DataFrame, detector: Any, key: Sequence[str] = ()) -> pd.DataFrame:
    """Score decoded rows with the batch path's partition functions.

    Parameters
    ----------
    frame : pandas.DataFrame
        The detector's feature columns and ``key``, with any index.
    detector : BaseDetector
        Fitted.
    key : sequence of str
        Columns carried into the result.

    Returns
    -------
    pandas.DataFrame
        Indexed like ``frame``, in its order: the ``key`` columns and ``score``
        (float64). Rows the detector's ``drop`` policy leaves out are absent.
    """
    detector.check_fitted()
    if not len(frame):
        out = frame[list(key)].copy()
        out["score"] = np.empty(0, dtype=np.float64)
        return out
    prepared = _prepare(frame, detector)
    scored: pd.DataFrame = _score_partition(
        prepared, detector.scorer_, list(detector.features_), list(key)
    )
    return scored


def decode_and_score(payloads: Payloads, detector: Any, key: Sequence[str] = ()) -> Scored:
    """Decode and score one micro-batch (runs on a worker).

    Parameters
    ----------
    payloads : Payloads
        The batch's payloads, in delivery order.
    detector : BaseDetector
        Fitted (scattered to the workers once by the runner).
    key : sequence of str
        Event fields carried into the results.

    Returns
    -------
    Scored
    """
    impute = getattr(detector, "missing_", "fail") == "impute_median"
    numeric, other = stream_inputs(detector)
    carried = list(dict.fromkeys([*key, *other]))
    rows = decode_rows(payloads.data, numeric, carried, impute=impute)
    frame = rows.frame(numeric, carried)
    if not other:
        return Scored(score_batch(frame, detector, key), rows.dead)
    frame, dead = add_context(frame, detector)  # the model's context features, per event
    return Scored(score_batch(frame, detector, key), sorted(rows.dead + dead))


def score_rows(rows: Rows, detector: Any, key: Sequence[str] = ()) -> Scored:
    """Score rows decoded by the consumer (runs on a worker).

    Parameters
    ----------
    rows : Rows
        The model's features in its order, the ``key`` columns, and the batch's dead
        letters.
    detector : BaseDetector
        Fitted.
    key : sequence of str
        The key columns.

    Returns
    -------
    Scored
    """
    frame = rows.frame(list(detector.features_), key)
    return Scored(score_batch(frame, detector, key), rows.dead)


def warm_up(detector: Any) -> int:
    """Score one row of zeros with the fitted scorer (runs on a worker before a stream's
    first batch: the model is loaded and its kernels compiled once, up front; nothing is
    counted in the metrics). Returns the rows scored."""
    X = np.zeros((1, len(detector.features_)), dtype=np.float64)
    return len(detector.scorer_.decision_function(X))

"""A scored micro-batch as result rows and dead letters, ready for the sinks.

:func:`batch_results` joins what a worker sent back (scores by position in the batch, the
reasons of the payloads that did not decode) with the batch's messages: result rows indexed
by message id with the threshold as it stood, and a dead letter for every message without a
result. Column-wise throughout (a batch is thousands of events).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from adp.stream.brokers.protocol import Message
from adp.stream.decode import DeadLetter
from adp.stream.scoring import Scored

__all__ = ["DROPPED", "batch_results"]

#: The reason of a row the model's missing-value policy (``drop``) left out.
DROPPED = "left out by the model's missing-value policy (drop)"


def batch_results(
    messages: Sequence[Message],
    scored: Scored,
    key: Sequence[str],
    threshold: float,
    model: str,
) -> tuple[pd.DataFrame, list[DeadLetter]]:
    """The result rows and dead letters of one scored micro-batch.

    Parameters
    ----------
    messages : sequence of Message
        The batch, in the order it was sent to be scored.
    scored : Scored
        What the worker returned: scores indexed by position in ``messages``.
    key : sequence of str
        The key columns carried into the results.
    threshold : float
        The threshold the batch is flagged against.
    model : str
        ``name@version`` of the model.

    Returns
    -------
    results : pandas.DataFrame
        Indexed by ``message_id``: the key columns, ``score``, ``is_anomaly``,
        ``threshold``, ``model``, ``event_time`` and ``scored_at`` (UTC).
    letters : list of DeadLetter
        The messages without a result, with the reason, in delivery order.
    """
    frame = scored.frame
    positions = frame.index.to_numpy(dtype=np.int64)
    good = [messages[i] for i in positions.tolist()]
    scores = frame["score"].to_numpy(dtype=np.float64)
    index = pd.Index([m.id for m in good], name="message_id", dtype=object)
    stamps = np.array([m.timestamp for m in good], dtype=np.float64)  # None: NaN
    columns: dict[str, object] = {k: frame[k].to_numpy() for k in key}
    columns["score"] = scores
    columns["is_anomaly"] = scores >= threshold
    columns["threshold"] = float(threshold)
    columns["model"] = model
    columns["event_time"] = pd.to_datetime(stamps, unit="s", utc=True)
    columns["scored_at"] = pd.Timestamp.now(tz="UTC")
    results = pd.DataFrame(columns, index=index)
    letters = [DeadLetter(messages[i], reason) for i, reason in scored.dead]
    if len(good) + len(letters) < len(messages):  # the policy dropped some rows
        accounted = set(positions.tolist()) | {i for i, _ in scored.dead}
        letters += [DeadLetter(m, DROPPED) for i, m in enumerate(messages) if i not in accounted]
        order = {m.id: i for i, m in enumerate(messages)}
        letters.sort(key=lambda d: order[d.message.id])
    return results, letters

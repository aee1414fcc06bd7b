"""Messages to rows: one JSON object per message, or a dead letter with the reason.

:func:`decode` turns a batch of broker messages into a :class:`pandas.DataFrame` indexed by
message id, with the model's feature columns (float64) and the key columns, and sets aside
each message that cannot be scored, with a reason a person can act on: not JSON, not a
JSON object, a missing feature or key, a feature that is not a number. A bad message never
stops the consumer; it goes to the dead-letter stream.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from adp.errors import one_line
from adp.stream.brokers.protocol import Message

__all__ = ["DeadLetter", "Decoded", "dead_letter_payload", "decode"]

#: How much of a bad message's payload its dead letter carries.
PAYLOAD_LIMIT = 65_536


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that cannot be scored, and why."""

    message: Message
    reason: str


@dataclass
class Decoded:
    """A decoded batch.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per good message, indexed by message id (``message_id``), in delivery
        order: the feature columns (float64; NaN only for a missing value the model's
        ``impute_median`` policy fills) and the key columns.
    messages : list of Message
        The good messages, in the frame's order.
    dead : list of DeadLetter
        The others.
    """

    frame: pd.DataFrame
    messages: list[Message] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _shown(value: Any) -> str:
    return one_line(repr(value), 60)


def _row(
    event: dict[str, Any], features: Sequence[str], key: Sequence[str], impute: bool
) -> tuple[list[float], list[Any]] | str:
    """The feature values and key values of one event, or why it cannot be scored."""
    values: list[float] = []
    for name in features:
        if name not in event:
            return f"missing feature {name!r}"
        value = event[name]
        if value is None:
            if not impute:
                return f"feature {name!r} is null (the model does not impute missing values)"
            values.append(math.nan)
            continue
        if not _number(value):
            return f"feature {name!r} is not a number: {_shown(value)}"
        number = _float(value)
        if not math.isfinite(number) and not impute:
            return f"feature {name!r} is not finite: {_shown(value)}"
        values.append(number)
    keys: list[Any] = []
    for name in key:
        if name not in event:
            return f"missing key {name!r}"
        value = event[name]
        if isinstance(value, dict | list) or value is None:
            return f"key {name!r} is not a string or number: {_shown(value)}"
        keys.append(value)
    return values, keys


def _parse(data: bytes) -> dict[str, Any] | str:
    if not data:
        return "empty message"
    try:
        event = json.loads(data)
    except UnicodeDecodeError as exc:
        return f"not JSON: not UTF-8 text (byte {exc.start})"
    except ValueError as exc:
        return f"not JSON: {one_line(str(exc), 120)}"
    if not isinstance(event, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(event), "a number")
        return f"not a JSON object: got {'null' if event is None else kind}"
    return event


_NUMBER_TYPES = frozenset({int, float})
_KEY_TYPES = frozenset({str, int, float, bool})


def decode(
    messages: Sequence[Message],
    features: Sequence[str],
    key: Sequence[str] = (),
    *,
    impute: bool = False,
) -> Decoded:
    """Decode ``messages`` into rows of ``features`` and ``key``; set the bad ones aside.

    Parameters
    ----------
    messages : sequence of Message
        One JSON object each.
    features : sequence of str
        The model's feature columns: each must be a number (not a boolean or string).
    key : sequence of str
        Columns carried into the results: strings or numbers.
    impute : bool
        The model fills missing values (``impute_median``): ``null``, ``NaN`` and infinite
        feature values are kept (as NaN or inf) for it to fill, not dead letters.

    Returns
    -------
    Decoded
    """
    features, key = list(features), list(key)
    good: list[Message] = []
    rows: list[list[Any]] = []
    keys: list[list[Any]] = []
    dead: list[DeadLetter] = []
    for message in messages:
        event = _parse(message.data)
        if isinstance(event, str):
            dead.append(DeadLetter(message, event))
            continue
        # the common case checked cheaply; anything else is explained by _row
        values = [event.get(name) for name in features]
        key_values = [event.get(name) for name in key]
        if all(type(v) in _NUMBER_TYPES for v in values) and all(
            type(v) in _KEY_TYPES for v in key_values
        ):
            parsed: tuple[list[Any], list[Any]] | str = (values, key_values)
        else:
            parsed = _row(event, features, key, impute)
        if isinstance(parsed, str):
            dead.append(DeadLetter(message, parsed))
            continue
        good.append(message)
        rows.append(parsed[0])
        keys.append(parsed[1])
    try:
        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(features))
    except OverflowError:  # an integer beyond float64's range: infinite, as 1e400 is
        matrix = np.asarray([[_float(v) for v in row] for row in rows], dtype=np.float64)
        matrix = matrix.reshape(len(rows), len(features))
    if not impute and len(matrix):
        finite = np.isfinite(matrix)
        if not finite.all():  # NaN or Infinity literals, or numbers beyond float64's range
            bad_rows = set(np.flatnonzero(~finite.all(axis=1)).tolist())
            for i in sorted(bad_rows):
                column = features[int(np.flatnonzero(~finite[i])[0])]
                dead.append(DeadLetter(good[i], f"feature {column!r} is not finite"))
            keep = [i for i in range(len(good)) if i not in bad_rows]
            good, keys, matrix = [good[i] for i in keep], [keys[i] for i in keep], matrix[keep]
    if len(dead) > 1:  # in delivery order
        position = {m.id: i for i, m in enumerate(messages)}
        dead.sort(key=lambda d: position[d.message.id])
    index = pd.Index([m.id for m in good], name="message_id", dtype=object)
    frame = pd.DataFrame(matrix, columns=features, index=index)
    for i, name in enumerate(key):
        frame[name] = pd.Series([k[i] for k in keys], index=index, dtype=object).infer_objects()
    return Decoded(frame, good, dead)


def dead_letter_payload(letter: DeadLetter, source: str) -> bytes:
    """The dead letter as JSON: ``message_id``, ``reason``, ``source`` and the message's
    ``data`` as text (cut to :data:`PAYLOAD_LIMIT` bytes)."""
    text = letter.message.data[:PAYLOAD_LIMIT].decode("utf-8", errors="replace")
    body = {
        "message_id": letter.message.id,
        "reason": letter.reason,
        "source": source,
        "data": text,
        "truncated": len(letter.message.data) > PAYLOAD_LIMIT,
    }
    return json.dumps(body, separators=(",", ":")).encode()

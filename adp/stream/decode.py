"""Messages to rows: one JSON object per message, or a dead letter with the reason.

:func:`decode_rows` turns a micro-batch's payloads into a float64 feature matrix and the key
columns, and sets aside each payload that cannot be scored, with a reason a person can act
on: not JSON, not a JSON object, a missing feature or key, a feature that is not a number.
A bad message never stops the consumer; it goes to the dead-letter stream.
:func:`decode` does the same for :class:`~adp.stream.brokers.Message` s and returns a
:class:`pandas.DataFrame` indexed by message id.

Decoding is the costliest step per event, so it is vectorised where it can be: each payload
is parsed with orjson (a JSON payload orjson refuses, e.g. with a ``NaN`` literal, is parsed
again with the standard library, which gives the reason), the features of every event are
taken with one :func:`operator.itemgetter`, their types checked over the whole batch at once,
and one NumPy array is built. Only a batch holding a bad message is decoded event by event,
to say which and why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
import pandas as pd

from adp.errors import one_line
from adp.stream.brokers.protocol import Message

__all__ = ["DeadLetter", "Decoded", "Rows", "dead_letter_payload", "decode", "decode_rows"]

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
    """The event of one payload, or why it is not one (the standard library's parser:
    slower than orjson, but it accepts ``NaN`` and ``Infinity`` and explains errors)."""
    if not data:
        return "empty message"
    try:
        event = json.loads(data)
    except UnicodeDecodeError as exc:
        return f"not JSON: not UTF-8 text (byte {exc.start})"
    except ValueError as exc:
        return f"not JSON: {one_line(str(exc), 120)}"
    return _checked_object(event)


def _checked_object(event: Any) -> dict[str, Any] | str:
    if not isinstance(event, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(event), "a number")
        return f"not a JSON object: got {'null' if event is None else kind}"
    return event


_NUMBER_TYPES = frozenset({int, float})
_KEY_TYPES = frozenset({str, int, float, bool})


class Rows:
    """A decoded micro-batch, by position in the batch.

    A plain class, not a dataclass: it travels to workers as a task argument, and dask
    walks a dataclass argument field by field, element by element (see
    :class:`adp.stream.scoring.Payloads`).

    Attributes
    ----------
    positions : ndarray of int64
        The position in the batch of each good payload, in delivery order.
    matrix : ndarray of float64
        One row per good payload: the feature values (NaN or infinite only for a missing
        value the model's ``impute_median`` policy fills).
    keys : list of list
        One list per key column: its value for each good payload.
    dead : list of (int, str)
        ``(position, reason)`` of the payloads that cannot be scored, in delivery order.
    """

    __slots__ = ("dead", "keys", "matrix", "positions")

    def __init__(
        self,
        positions: np.ndarray,
        matrix: np.ndarray,
        keys: list[list[Any]],
        dead: list[tuple[int, str]],
    ) -> None:
        self.positions, self.matrix, self.keys, self.dead = positions, matrix, keys, dead

    def frame(self, features: Sequence[str], key: Sequence[str], index: Any = None) -> pd.DataFrame:
        """The rows as a frame: ``features`` (float64) and ``key`` columns, indexed by
        ``index`` (default: the positions)."""
        index = pd.Index(self.positions if index is None else index)
        frame = pd.DataFrame(self.matrix, columns=list(features), index=index)
        for name, values in zip(key, self.keys, strict=True):
            frame[name] = pd.Series(values, index=index, dtype=object).infer_objects()
        return frame


def _getter(names: Sequence[str]) -> Any:
    """A function from an event to the tuple of its values of ``names`` (KeyError when one
    is missing)."""
    if len(names) == 1:
        name = names[0]
        return lambda event: (event[name],)
    if not names:
        return lambda event: ()
    return itemgetter(*names)


def _fast(
    events: list[dict[str, Any]], features: list[str], key: list[str]
) -> tuple[np.ndarray, list[list[Any]]] | None:
    """The matrix and key columns of ``events`` when every one is good (every feature a
    number, every key a string or number); ``None`` when one is not."""
    try:
        rows = list(map(_getter(features), events))
        key_rows = list(map(_getter(key), events)) if key else []
    except KeyError:
        return None
    if not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
        return None
    if key and not set(map(type, chain.from_iterable(key_rows))) <= _KEY_TYPES:
        return None
    try:
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), len(features))
    except OverflowError:  # an integer beyond float64's range: event by event
        return None
    keys = [list(column) for column in zip(*key_rows, strict=True)] if key_rows else []
    return matrix, keys or [[] for _ in key]


def _slow(
    events: list[dict[str, Any]], features: list[str], key: list[str], impute: bool
) -> tuple[list[int], np.ndarray, list[list[Any]], list[tuple[int, str]]]:
    """Event by event: which are good, and why each other one is not."""
    good: list[int] = []
    rows: list[list[float]] = []
    key_rows: list[list[Any]] = []
    dead: list[tuple[int, str]] = []
    for i, event in enumerate(events):
        parsed = _row(event, features, key, impute)
        if isinstance(parsed, str):
            dead.append((i, parsed))
            continue
        good.append(i)
        rows.append(parsed[0])
        key_rows.append(parsed[1])
    try:
        matrix = np.asarray(rows, dtype=np.float64)
    except OverflowError:  # an integer beyond float64's range: infinite, as 1e400 is
        matrix = np.asarray([[_float(v) for v in row] for row in rows], dtype=np.float64)
    keys = [[row[j] for row in key_rows] for j in range(len(key))]
    return good, matrix.reshape(len(rows), len(features)), keys, dead


def _events(payloads: Sequence[bytes]) -> tuple[list[Any], list[int], list[tuple[int, str]]]:
    """The JSON object of each payload (with its position), and why each other payload is
    not one. One ``map`` of orjson over the batch when every payload is an object; event
    by event (the standard library saying why) when one is not."""
    try:
        events = list(map(orjson.loads, payloads))
    except orjson.JSONDecodeError:
        pass
    else:
        if set(map(type, events)) <= {dict}:
            return events, list(range(len(events))), []
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    good: list[Any] = []
    where: list[int] = []
    dead: list[tuple[int, str]] = []
    for i, data in enumerate(payloads):
        try:
            event = loads(data)
        except decode_error:  # NaN, Infinity, 1e999, or not JSON: let json say which
            event = _parse(data)
        else:
            if type(event) is not dict:
                event = _checked_object(event)
        if isinstance(event, str):
            dead.append((i, event))
        else:
            good.append(event)
            where.append(i)
    return good, where, dead


def decode_rows(
    payloads: Sequence[bytes],
    features: Sequence[str],
    key: Sequence[str] = (),
    *,
    impute: bool = False,
) -> Rows:
    """Decode a micro-batch's payloads into rows of ``features`` and ``key``.

    Parameters
    ----------
    payloads : sequence of bytes
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
    Rows
        The good rows by position, and the reasons of the others.
    """
    features, key = list(features), list(key)
    events, where, dead = _events(payloads)
    fast = _fast(events, features, key)

    if fast is not None:
        matrix, keys = fast
        good = list(range(len(events)))
    else:
        good, matrix, keys, bad = _slow(events, features, key, impute)
        dead += [(where[i], reason) for i, reason in bad]
    if not impute and len(matrix):
        finite = np.isfinite(matrix)
        if not finite.all():  # NaN or Infinity literals, or numbers beyond float64's range
            bad_rows = np.flatnonzero(~finite.all(axis=1))
            for i in bad_rows.tolist():
                column = features[int(np.flatnonzero(~finite[i])[0])]
                dead.append((where[good[i]], f"feature {column!r} is not finite"))
            keep = np.ones(len(matrix), dtype=bool)
            keep[bad_rows] = False
            matrix = matrix[keep]
            good = [g for g, k in zip(good, keep.tolist(), strict=True) if k]
            keys = [[v for v, k in zip(col, keep.tolist(), strict=True) if k] for col in keys]
    if len(dead) > 1:  # in delivery order
        dead.sort()
    positions = np.asarray([where[g] for g in good], dtype=np.int64)
    return Rows(positions, matrix, keys, dead)


def decode(
    messages: Sequence[Message],
    features: Sequence[str],
    key: Sequence[str] = (),
    *,
    impute: bool = False,
) -> Decoded:
    """Decode ``messages`` into rows of ``features`` and ``key``; set the bad ones aside.

    As :func:`decode_rows`, for broker messages: the frame is indexed by message id
    (``message_id``).

    Returns
    -------
    Decoded
    """
    rows = decode_rows([m.data for m in messages], features, key, impute=impute)
    good = [messages[i] for i in rows.positions.tolist()]
    index = pd.Index([m.id for m in good], name="message_id", dtype=object)
    frame = rows.frame(features, key, index)
    dead = [DeadLetter(messages[i], reason) for i, reason in rows.dead]
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
    return orjson.dumps(body)

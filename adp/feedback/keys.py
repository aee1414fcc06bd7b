"""Row keys: how a label finds its row again, in any output and under any model version.

A row's key is the JSON text of its key columns' values, in the key's column order, with
no spaces (``{"sensor_id":"a7","ts":"2026-03-01T12:00:00"}``). Values are made plain:
numpy numbers become Python numbers, timestamps ISO 8601 text, missing values ``null``.
The label store keeps this text; the review queue computes it for each scored row, on the
workers, one partition at a time, so labelled rows are recognised without a join.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from adp.errors import ConfigError, DataError

#: The column the review queue adds to scored rows: each row's key text.
KEY_COLUMN = "row_key"


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data (numbers, text, ``None``).

    Raises
    ------
    adp.errors.DataError
        For a value that cannot identify a row (a list, a dict, bytes).
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, pd.Timedelta | dt.timedelta):
        return str(pd.Timedelta(value))
    raise DataError(
        f"a key value of type {type(value).__name__} cannot identify a row: key columns must "
        "hold numbers, text or timestamps"
    )


def key_text(values: Mapping[str, Any], columns: Sequence[str] | None = None) -> str:
    """The key text of one row.

    Parameters
    ----------
    values : mapping
        Key column to value.
    columns : sequence of str, optional
        The key's columns, in order; default the mapping's own order. Every one must be in
        ``values`` and nothing else may be.

    Returns
    -------
    str
        Compact JSON of the values, in ``columns`` order.

    Raises
    ------
    adp.errors.ConfigError
        When ``values`` lacks a key column or has others.
    """
    order = list(columns) if columns is not None else list(values)
    if columns is not None and set(values) != set(order):
        raise ConfigError(
            f"the row key names columns {sorted(values)}, but the output's key columns are "
            f"{order}: give exactly those, e.g. {json.dumps(dict.fromkeys(order, '...'))}"
        )
    return json.dumps({c: plain(values[c]) for c in order}, separators=(",", ":"))


def parse_key(text: str, columns: Sequence[str] | None = None) -> str:
    """Check a key given as JSON text (``--key '{"id": 17}'``) and return its key text.

    Raises
    ------
    adp.errors.ConfigError
        When ``text`` is not a JSON object of key column to value, naming the fix.
    """
    try:
        values = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"row key {text!r} is not JSON ({exc}): give an object of key column to value, "
            'e.g. {"id": 17}'
        ) from None
    if not isinstance(values, dict) or not values:
        raise ConfigError(
            f'row key {text!r} must be a JSON object of key column to value, e.g. {{"id": 17}}'
        )
    try:
        return key_text(values, columns)
    except DataError as exc:
        raise ConfigError(f"row key {text!r}: {exc}") from None


def key_texts(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """The key text of every row of ``frame`` (a pandas partition), indexed like it."""
    names = list(columns)
    if not len(frame):
        return pd.Series([], index=frame.index, dtype=object)
    cells = [frame[c].tolist() for c in names]
    texts = [
        key_text(dict(zip(names, row, strict=True)), names) for row in zip(*cells, strict=True)
    ]
    return pd.Series(texts, index=frame.index, dtype=object)


def key_digest(text: str) -> str:
    """The SHA-256 of a key text (an indexable, fixed-length column of the label store)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


__all__ = ["KEY_COLUMN", "key_digest", "key_text", "key_texts", "parse_key", "plain"]

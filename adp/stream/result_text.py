"""Result rows as text: the JSON object a stream sink publishes for each row, and the
column-wise conversions the sinks share (Python values, ISO 8601 times).

A micro-batch is tens of thousands of rows and its encoding runs on the consumer, the
stream's one serial path, so everything here is column-wise: each column is encoded once
(a column that holds one value throughout, as ``threshold``, ``model`` and ``scored_at``
do in every batch, once in all, written into the row template itself), and the rows are
assembled with one format string. Floats are written by orjson in their shortest
round-trip form, as ``json.dumps`` writes them up to the exponent's spelling (``1e-07``
there, ``1e-7`` here): a reader gets the exact score (pandas' ``to_json`` would round it
to 10 or 15 digits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

__all__ = ["iso_text", "native", "result_json"]


def native(values: Any) -> list[Any]:
    """A column as Python values (NaN and NaT as None)."""
    series = pd.Series(values)
    out: list[Any] = series.astype(object).where(series.notna(), None).tolist()
    return out


def iso_text(column: pd.Series) -> list[str | None]:
    """A UTC datetime column as ISO 8601 text (``...T12:00:00.000000Z``), NaT as None;
    column-wise in NumPy."""
    values = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
    out: list[str | None] = np.datetime_as_string(values, unit="us", timezone="UTC").tolist()
    missing = np.isnat(values)
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
    return out


def _json_text(values: list[Any]) -> list[str]:
    """Python values as JSON text: a column of plain strings (no quote, backslash or
    control character, checked once over the whole column) is quoted as it is; anything
    else is encoded by orjson value by value (NaN and infinities as null)."""
    if set(map(type, values)) <= {str}:
        joined = "".join(values)
        if '"' not in joined and "\\" not in joined and joined.isprintable():
            return list(map('"{}"'.format, values))
    return [orjson.dumps(v).decode() for v in values]


def _json_column(column: pd.Series) -> list[str]:
    """Each value of a result column as JSON text, column-wise where the type allows."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) and not column.hasnans:
        return np.where(column.to_numpy(dtype=bool), "true", "false").tolist()
    if pd.api.types.is_float_dtype(dtype):
        # One orjson call for the column (NaN and infinities as null), split at the commas.
        floats = np.ascontiguousarray(column.to_numpy(dtype=np.float64))
        return orjson.dumps(floats, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(",")
    if pd.api.types.is_integer_dtype(dtype) and not column.hasnans:
        return list(map(str, column.to_numpy().tolist()))
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return ['"' + v + '"' if v is not None else "null" for v in iso_text(column)]
    return _json_text(native(column))


def _holds_one_value(column: pd.Series) -> bool:
    """Whether every value of a (non-empty) column equals its first. A column with a
    missing value is encoded row by row: a nullable column's comparison skips its NAs, and
    would call ``[NA, "a", "a"]`` one value."""
    try:
        if column.isna().any():
            return False
        return bool((column == column.iloc[0]).all())
    except (TypeError, ValueError):  # values that do not compare as scalars
        return False


def result_json(results: pd.DataFrame) -> list[tuple[str, bytes]]:
    """``(message_id, JSON object)`` of each result row, times as ISO 8601 text (UTC).

    Parameters
    ----------
    results : pandas.DataFrame
        Result rows indexed by message id.

    Returns
    -------
    list of (str, bytes)
        In the frame's order; each object has ``message_id`` first, then the columns.
    """
    if not len(results):
        return []
    ids = [str(i) for i in results.index.tolist()]
    fields = [orjson.dumps("message_id").decode() + ":%s"]
    varying = [_json_text(ids)]
    for name in results.columns:
        column = results[name]
        label = orjson.dumps(str(name)).decode().replace("%", "%%")
        if _holds_one_value(column):
            fields.append(label + ":" + _json_column(column.iloc[:1])[0].replace("%", "%%"))
        else:
            fields.append(label + ":%s")
            varying.append(_json_column(column))
    template = "{" + ",".join(fields) + "}"
    return [
        (mid, (template % row).encode())
        for mid, row in zip(ids, zip(*varying, strict=True), strict=True)
    ]

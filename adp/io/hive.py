"""Hive-style partition folders (``site=a/date=2026-11-01/part.parquet``): the partition
values a path carries, and pruning a file list with Parquet ``filters`` on them."""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from typing import Any

Filter = tuple[str, str, Any]

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def partition_values(path: str, root: str) -> dict[str, str]:
    """The ``key=value`` folder names between ``root`` and the file ``path``."""
    relative = path[len(root) :] if path.startswith(root) else path
    values = {}
    for segment in relative.strip("/").split("/")[:-1]:
        key, sep, value = segment.partition("=")
        if sep and key:
            values[key] = value
    return values


def _coerce(text: str, like: Any) -> Any:
    if isinstance(like, bool):
        return text.lower() in ("true", "1")
    if isinstance(like, int | float | dt.date | dt.datetime):
        try:
            if isinstance(like, dt.datetime):
                return dt.datetime.fromisoformat(text)
            if isinstance(like, dt.date):
                return dt.date.fromisoformat(text)
            return type(like)(text)
        except ValueError:
            return text
    return text


def _matches(values: dict[str, str], predicate: Sequence[Any]) -> bool:
    column, op, value = predicate
    if column not in values:
        return True  # not a partition column: the reader filters the rows
    text = values[column]
    if op in ("in", "not in"):
        members = {_coerce(text, v) == v for v in value}
        return (True in members) == (op == "in")
    compare = _OPS.get(op)
    if compare is None:
        return True
    actual = _coerce(text, value)
    try:
        return bool(compare(actual, value))
    except TypeError:
        return True


def prune(files: list[str], root: str, filters: Sequence[Any] | None) -> list[str]:
    """Keep the files whose partition folders can satisfy ``filters``.

    ``filters`` follows :func:`dask.dataframe.read_parquet`: a list of ``(column, op,
    value)`` tuples joined by AND, or a list of such lists joined by OR. Predicates on
    columns that are not partition folders keep the file (the reader applies them).
    """
    if not filters:
        return files
    disjunction = filters if isinstance(filters[0], list) else [filters]
    kept = []
    for path in files:
        values = partition_values(path, root)
        if any(all(_matches(values, p) for p in conj) for conj in disjunction):
            kept.append(path)
    return kept

"""The encoding parameters of a :class:`~adp.context.spec.Context` (``categorical``,
``text``, ``top``, ``components``): their nested form and their checks, one-line errors
naming the field.

Nested forms (in a job spec's ``context:`` section or ``context={...}``)::

    categorical: [colour, shape]                 # named columns
    categorical: auto                            # every string-like feature column
    categorical: {columns: [colour], top: 20}    # with the one-hot count
    text: {columns: [comment], components: 8}    # likewise, with the SVD size
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from adp.errors import ConfigError


class _Encoded(Protocol):
    """What these checks read of an :class:`adp.context.spec.Context` (which imports
    this module)."""

    @property
    def by(self) -> str | None: ...
    @property
    def time(self) -> str | None: ...
    @property
    def categorical(self) -> tuple[str, ...] | str: ...
    @property
    def text(self) -> tuple[str, ...] | str: ...
    @property
    def top(self) -> int: ...
    @property
    def components(self) -> int: ...
    def encoded_columns(self) -> list[str]: ...


__all__ = [
    "DEFAULT_COMPONENTS",
    "DEFAULT_TOP",
    "MAX_COMPONENTS",
    "MAX_TOP",
    "check_encodings",
    "encoding_spec",
    "parse_encoding",
]

#: The most one-hot categories per categorical column.
MAX_TOP = 1_000
#: The most SVD components per text column.
MAX_COMPONENTS = 100
#: Default one-hot categories per categorical column.
DEFAULT_TOP = 20
#: Default SVD components per text column.
DEFAULT_COMPONENTS = 8

_SIZE = {"categorical": ("top", DEFAULT_TOP), "text": ("components", DEFAULT_COMPONENTS)}


def _columns(value: object, where: str) -> tuple[str, ...] | str:
    if value == "auto":
        return "auto"
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list of column names or auto, got {value!r}")
    if not all(isinstance(c, str) and c for c in value):
        raise ConfigError(f"{where}: expected a list of column names, got {list(value)!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where} names a column twice: {list(value)}")
    return tuple(value)


def parse_encoding(value: object, field: str) -> tuple[tuple[str, ...] | str, int]:
    """``(columns, size)`` from the nested form of ``context.<field>`` (``categorical`` or
    ``text``): a list, ``auto``, or ``{columns: ..., top|components: n}``."""
    size_name, default = _SIZE[field]
    if value is None:
        return (), default
    if not isinstance(value, Mapping):
        return _columns(value, f"context.{field}"), default
    unknown = sorted(set(value) - {"columns", size_name})
    if unknown:
        raise ConfigError(f"context.{field}: unknown fields {unknown}; valid: columns, {size_name}")
    if "columns" not in value:
        raise ConfigError(f"context.{field}.columns: name the columns (a list) or auto")
    return _columns(value["columns"], f"context.{field}.columns"), value.get(size_name, default)


def encoding_spec(context: _Encoded) -> dict[str, Any]:
    """The nested form of ``context``'s encodings (empty without any)."""
    out: dict[str, Any] = {}
    for field, (size_name, _) in _SIZE.items():
        columns = getattr(context, field)
        if columns:
            listed = columns if columns == "auto" else list(columns)
            out[field] = {"columns": listed, size_name: getattr(context, size_name)}
    return out


def _size(value: object, where: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected a whole number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{where} must be between {low} and {high}, got {value}")


def check_encodings(context: _Encoded) -> None:
    """Check (and normalise to tuples) ``context``'s encoding fields.

    Raises
    ------
    adp.errors.ConfigError
        Naming the field: a bad column list, a column both categorical and text or also
        ``by``/``time``, or a size out of range.
    """
    for field in _SIZE:
        value = getattr(context, field)
        columns = _columns(value, f"context.{field}") if value != () else ()
        object.__setattr__(context, field, columns)
    _size(context.top, "context.categorical.top", 0, MAX_TOP)
    _size(context.components, "context.text.components", 1, MAX_COMPONENTS)
    if context.top != DEFAULT_TOP and not context.categorical:
        raise ConfigError("context.categorical.top needs categorical columns (or auto)")
    if context.components != DEFAULT_COMPONENTS and not context.text:
        raise ConfigError("context.text.components needs text columns (or auto)")
    named = context.encoded_columns()
    both = sorted({c for c in named if named.count(c) > 1})
    if both:
        raise ConfigError(f"context.text: {both[0]!r} is also in context.categorical")
    used = [c for c in named if c in (context.by, context.time)]
    if used:
        raise ConfigError(
            f"context.categorical/text: {used[0]!r} is the context's by or time column"
        )

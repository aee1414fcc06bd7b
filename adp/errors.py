"""ADP's exceptions. Each subclasses a builtin so callers can catch what they already know,
and every message says what is wrong and where: the file, partition, column or field."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class AdpError(Exception):
    """Base class of every error ADP raises on purpose."""


class ConfigError(AdpError, ValueError):
    """A configuration value or job spec field is invalid."""


class SpecError(ConfigError):
    """A job spec does not validate; the message names the field path."""


class DetectorError(AdpError, ValueError):
    """An unknown detector name or parameter, or a detector used before it was fitted."""


class NotFittedError(DetectorError, AttributeError):
    """A detector was asked to score before :meth:`fit`."""


class DataError(AdpError, ValueError):
    """The data at fault: names the file or partition and the column."""


class SourceError(AdpError, OSError):
    """A source cannot be opened or read (missing path, unreadable file, refused endpoint)."""


class OutputExistsError(AdpError, FileExistsError):
    """The output location already holds data and ``mode`` is not ``overwrite``."""


class AccessDeniedError(AdpError, PermissionError):
    """A path, endpoint or action is outside what configuration or policy allows."""


class AuditError(AdpError, RuntimeError):
    """An audit record cannot be written or read; the audited action does not run."""


class AuditVerificationError(AuditError):
    """The audit trail fails verification; the message names the first bad sequence number."""


class ModelNotFoundError(AdpError, LookupError):
    """No registered model matches a name, version or stage; the message lists what exists."""


class ModelIntegrityError(AdpError, ValueError):
    """A model artifact does not match the SHA-256 the registry recorded; it is not loaded."""


class ServiceStartError(AdpError, RuntimeError):
    """``adp serve`` cannot start driving jobs (its job driver process or cluster); the
    message says why."""


class BenchmarkError(AdpError, RuntimeError):
    """A benchmark's own self-check failed (results disagree, rows went missing): its
    figures would mean nothing, so none are reported."""


def bounded(items: Iterable[Any], limit: int = 10, width: int = 60) -> str:
    """A list for an error message, cut to ``limit`` items of at most ``width`` characters,
    followed by ``... and N more`` (so a message about 1.5M columns stays one short line).

    Examples
    --------
    >>> bounded(["a", "b", "c"], limit=2)
    "['a', 'b', ... and 1 more]"
    """
    values = [items] if isinstance(items, str | bytes) else list(items)
    shown = []
    for value in values[:limit]:
        text = repr(value)
        shown.append(text if len(text) <= width else text[: width - 4] + "...'")
    more = len(values) - len(shown)
    return "[" + ", ".join(shown) + (f", ... and {more} more" if more else "") + "]"


def bounded_mapping(items: Mapping[Any, Any], limit: int = 10, width: int = 60) -> str:
    """A mapping for an error message (``{'x': 3, ...}``), cut like :func:`bounded`.

    Examples
    --------
    >>> bounded_mapping({"a": 1, "b": 2, "c": 3}, limit=2)
    "{'a': 1, 'b': 2, ... and 1 more}"
    """
    pairs = list(items.items())
    shown = []
    for key, value in pairs[:limit]:
        text = f"{key!r}: {value!r}"
        shown.append(text if len(text) <= width else text[: width - 3] + "...")
    more = len(pairs) - len(shown)
    return "{" + ", ".join(shown) + (f", ... and {more} more" if more else "") + "}"


def one_line(text: str, limit: int = 400) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def describe_validation_errors(exc: Any, limit: int = 5) -> str:
    """A pydantic ``ValidationError``'s failed fields, ``path: message`` joined by ``;``,
    at most ``limit`` of them (unknown keys read "unknown field"; a boolean or string given
    for a number is shown)."""
    parts = []
    errors = exc.errors()
    for error in errors[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] in ("int_type", "float_type", "bool_type") and isinstance(
            error.get("input"), bool | str
        ):
            message = f"{message}, got {error['input']!r}"
        parts.append(f"{where}: {one_line(message.removeprefix('Value error, '), 160)}")
    if len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more")
    return "; ".join(parts)

"""What every section of a stream spec shares: strict field types, paths made absolute,
unique names, and validation errors named by their field's path."""

from __future__ import annotations

import os
from typing import Annotated

from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, ValidationError

from adp.errors import bounded, describe_validation_errors

__all__ = ["Int", "Number", "SpecModel", "absolute_location", "describe_errors", "unique_names"]

#: An integer field: booleans, floats and strings are refused.
Int = Annotated[int, Strict()]
#: A number field: finite, no booleans or strings (integers are accepted).
Number = Annotated[float, Strict(), AllowInfNan(False)]


def absolute_location(uri: str) -> str:
    """A relative local path or SQLite file made absolute against the current directory
    (as ``adp run`` resolves its spec's paths), so tasks on remote workers get absolute
    ones; remote URLs and server databases come back unchanged."""
    import sqlalchemy as sa

    from adp.db import is_sql_url
    from adp.paths import is_local

    if not uri:
        return uri
    if is_sql_url(uri):
        try:
            url = sa.make_url(uri)
        except (sa.exc.ArgumentError, ValueError):
            return uri  # refused, naming it, when it is opened
        database = url.database
        if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            return uri
        if database.startswith("file:") or os.path.isabs(database):
            return uri
        absolute = os.path.abspath(os.path.expanduser(database))
        return url.set(database=absolute).render_as_string(hide_password=False)
    if not is_local(uri):
        return uri
    prefix = "file://" if uri.startswith("file://") else ""
    path = uri[len(prefix) :]
    resolved = os.path.abspath(os.path.expanduser(path))
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return prefix + resolved


def unique_names(names: list[str], field: str) -> list[str]:
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if twice:
        raise ValueError(f"{field} names columns more than once: {bounded(dict.fromkeys(twice))}")
    return names


class SpecModel(BaseModel):
    """A spec section: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """The failed fields, ``path: message`` joined by ``;``, at most ``limit`` of them
    (:func:`adp.errors.describe_validation_errors`)."""
    return describe_validation_errors(exc, limit)

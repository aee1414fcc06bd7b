"""What every section of a stream spec shares: strict field types, paths made absolute,
unique names, and validation errors named by their field's path."""

from __future__ import annotations

from typing import Annotated

from pydantic import AllowInfNan, BaseModel, ConfigDict, Strict, ValidationError

from adp.errors import bounded, describe_validation_errors
from adp.io.locations import resolve_location as absolute_location

__all__ = ["Int", "Number", "SpecModel", "absolute_location", "describe_errors", "unique_names"]

#: An integer field: booleans, floats and strings are refused.
Int = Annotated[int, Strict()]
#: A number field: finite, no booleans or strings (integers are accepted).
Number = Annotated[float, Strict(), AllowInfNan(False)]


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

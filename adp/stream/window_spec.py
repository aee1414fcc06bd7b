"""The ``window`` section of a stream spec: per-key windows and where they persist
(:mod:`adp.stream.windows` computes them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from adp.redact import redact_url
from adp.stream.spec_base import Int, SpecModel, absolute_location, unique_names

__all__ = ["WindowSpec", "WindowStateSpec"]

#: A rolling feature of a window column.
WindowFeature = Literal["mean", "std", "diff_from_mean"]


def _all_features() -> list[WindowFeature]:
    return ["mean", "std", "diff_from_mean"]


class WindowStateSpec(SpecModel):
    """Where per-key windows persist: a Redis URL (a hash, ``key``) or a PostgreSQL or
    SQLite URL (a table, ``table``)."""

    url: str = Field(min_length=1)
    key: str | None = Field(None, min_length=1, description="Redis: the hash")
    table: str = Field("adp_stream_windows", min_length=1, description="SQL: the table")

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        return absolute_location(value)

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        from adp.db import check_identifier

        return check_identifier(value, "window.state.table")

    @model_validator(mode="after")
    def _known_kind(self) -> WindowStateSpec:
        from adp.db import is_sql_url

        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        if scheme not in ("redis", "rediss", "unix") and not is_sql_url(self.url):
            raise ValueError(
                f"url {redact_url(self.url)!r} is neither a Redis URL (redis://host:port/db) "
                "nor a PostgreSQL or SQLite URL"
            )
        return self


class WindowSpec(SpecModel):
    """Per-key windows (:mod:`adp.stream.windows`): the events of one ``by`` value share a
    window of their last ``size`` events, whose statistics refresh every ``slide`` events
    (default ``size``: tumbling); each event gets the ``features`` of each of ``columns``
    (``<column>_mean``, ``<column>_std``, ``<column>_diff_from_mean``) from its key's window
    before it. The windows persist in ``state`` (default: a hash beside a Redis source
    stream, else a table in the SQL sink's database)."""

    by: list[str] = Field(min_length=1)
    size: Int = Field(ge=1)
    slide: Int | None = Field(None, ge=1)
    columns: list[str] = Field(min_length=1)
    features: list[WindowFeature] = Field(default_factory=_all_features, min_length=1)
    state: WindowStateSpec | None = None

    @field_validator("by", mode="before")
    @classmethod
    def _listed(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> WindowSpec:
        unique_names(self.by, "by")
        unique_names(self.columns, "columns")
        unique_names(list(self.features), "features")
        if self.slide is not None and self.slide > self.size:
            raise ValueError(f"slide ({self.slide}) exceeds size ({self.size})")
        return self

    def shape(self) -> Any:
        """The window's :class:`adp.stream.windows.WindowShape`."""
        from adp.stream.windows import WindowShape

        return WindowShape(
            tuple(self.by),
            self.size,
            self.slide if self.slide is not None else self.size,
            tuple(self.columns),
            tuple(self.features),
        )

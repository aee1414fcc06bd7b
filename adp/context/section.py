"""The ``context:`` section of a job spec, typed (pydantic): unknown keys and wrong types
fail with the field's path (``context.season.period: ...``), as in the rest of the spec
(:mod:`adp.jobs.spec`, which includes it)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adp.context.spec import Context, parse_period
from adp.errors import ConfigError

__all__ = ["CategoricalSpec", "ContextSpec", "SeasonSpec", "TextSpec", "WindowSpec"]

Int = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]
Column = Annotated[str, Field(min_length=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Stat = Literal["mean", "std", "min", "max", "median", "diff"]


def _default_stats() -> list[Stat]:
    return ["mean", "std", "diff"]


class WindowSpec(_Spec):
    """Trailing-window statistics per entity (``context.window``)."""

    size: Int = Field(ge=2, le=2_000)
    stats: list[Stat] = Field(default_factory=_default_stats, min_length=1)


class SeasonSpec(_Spec):
    """A seasonal baseline per entity (``context.season``): a duration such as ``1d``,
    fitted as the robust median per phase (``method: profile``, the default) or with
    statsmodels' robust STL (``method: stl``, for series that trend)."""

    period: str
    bins: Int | None = Field(None, ge=1, le=10_000)
    method: Literal["profile", "stl"] = "profile"

    @field_validator("period")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_period(value, where="period")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("period: ")) from None
        return value


def _column_list(value: Any) -> Any:
    if isinstance(value, str) and value != "auto":
        raise ValueError(f"expected a list of columns or auto, got {value!r}")
    if isinstance(value, list) and not all(isinstance(c, str) and c for c in value):
        raise ValueError(f"expected a list of column names, got {value!r}")
    return value


class _Encoding(_Spec):
    columns: list[Column] | Literal["auto"]

    @field_validator("columns", mode="before")
    @classmethod
    def _list_or_auto(cls, value: Any) -> Any:
        return _column_list(value)


class CategoricalSpec(_Encoding):
    """Categorical columns (``context.categorical``): frequency and one-hot encodings
    fitted on the sample. Short forms: a list of columns, or ``auto``."""

    top: Int = Field(20, ge=0, le=1_000)


class TextSpec(_Encoding):
    """Free-text columns (``context.text``): hashed words and a truncated SVD fitted on
    the sample. Short forms: a list of columns, or ``auto``."""

    components: Int = Field(8, ge=1, le=100)


class ContextSpec(_Spec):
    """Per-entity, time-aware features (see :mod:`adp.context`): the detector scores
    seasonal residuals and window statistics of the feature columns.

    Without ``time`` it only encodes ``categorical`` and ``text`` columns.

    Examples
    --------
    ``context: {by: sensor_id, time: ts, window: {size: 12}, season: {period: 1d}}``

    ``context: {categorical: [colour], text: {columns: [comment], components: 8}}``
    """

    by: str | None = Field(None, min_length=1)
    window: WindowSpec | None = None
    season: SeasonSpec | None = None
    normalise: Literal["robust", "robust_phase", "none"] = "robust"
    raw: Flag = False
    categorical: CategoricalSpec | None = None
    text: TextSpec | None = None
    # after the fields it depends on: its check reads them
    time: str | None = Field(None, min_length=1, validate_default=True)

    @field_validator("categorical", "text", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        return {"columns": _column_list(value)} if isinstance(value, list | str) else value

    @field_validator("time")
    @classmethod
    def _time_needed(cls, value: str | None, info: ValidationInfo) -> str | None:
        needs = any(info.data.get(name) is not None for name in ("by", "window", "season"))
        if value is None and needs:
            raise ValueError("Field required with by, window or season")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ContextSpec:
        self.to_context()  # cross-field rules (by differs from time, unique stats)
        return self

    def to_context(self) -> Context:
        """The :class:`adp.context.Context` this section describes."""
        try:
            return Context.from_spec(self.model_dump(exclude_none=True))
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("context.")) from None

    def check_job(self, *, search: bool, registered: bool, features: list[str]) -> None:
        """Refuse what a job cannot combine with a context (raises ``ValueError``, which
        the job spec reports under its own name). A ``search`` section searches on the
        context's features (:func:`adp.search` with ``context``)."""
        if registered:
            raise ValueError(
                "'context' cannot be combined with detector.model: a registered model "
                "carries the context it was fitted with; remove the context section"
            )
        used = {self.time, self.by} - {None}
        clash = [f for f in features if f in used]
        if clash:
            raise ValueError(
                f"source.features names the context's by/time column {clash[0]!r}; "
                "remove it from the features"
            )

"""The ``context:`` section of a job spec, typed (pydantic): unknown keys and wrong types
fail with the field's path (``context.season.period: ...``), as in the rest of the spec
(:mod:`adp.jobs.spec`, which includes it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from adp.context.spec import Context, parse_period
from adp.errors import ConfigError

__all__ = ["ContextSpec", "SeasonSpec", "WindowSpec"]

Int = Annotated[int, Strict()]
Flag = Annotated[bool, Strict()]


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
    """A seasonal baseline per entity (``context.season``): a duration such as ``1d``."""

    period: str
    bins: Int | None = Field(None, ge=1, le=10_000)

    @field_validator("period")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_period(value, where="period")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("period: ")) from None
        return value


class ContextSpec(_Spec):
    """Per-entity, time-aware features (see :mod:`adp.context`): the detector scores
    seasonal residuals and window statistics of the feature columns.

    Examples
    --------
    ``context: {by: sensor_id, time: ts, window: {size: 12}, season: {period: 1d}}``
    """

    by: str | None = Field(None, min_length=1)
    time: str = Field(min_length=1)
    window: WindowSpec | None = None
    season: SeasonSpec | None = None
    normalise: Literal["robust", "robust_phase", "none"] = "robust"
    raw: Flag = False

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
        the job spec reports under its own name)."""
        if search:
            raise ValueError(
                "'context' cannot be combined with a 'search' section yet: search on "
                "the raw features, or fit with the context in a score job"
            )
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

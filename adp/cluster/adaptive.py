"""Adaptive workers: the bounds within which a cluster ADP starts grows with queued work and
shrinks back when idle (distributed's :class:`~distributed.deploy.Adaptive`).

One typed description, :class:`AdaptOptions`, serves ``adp.connect(adapt=...)``, a job
spec's ``cluster: {adapt: ...}`` and the ``adp.cluster.adapt`` config key. A scheduler ADP
did not start (an address) cannot be scaled from a client: on Kubernetes the operator's
DaskAutoscaler does it, reading the scheduler's ``/api/v1/adaptive_target``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from adp.errors import ConfigError


class AdaptOptions(BaseModel):
    """Bounds and pace of adaptive scaling.

    Attributes
    ----------
    minimum, maximum : int
        Workers kept at least / at most.
    interval : str
        How often the target is recomputed (a dask time string).
    wait_count : int
        Consecutive intervals a worker must be idle before it is retired.
    target_duration : str
        How long the queued work should take with the workers asked for.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    minimum: int = Field(0, ge=0)
    maximum: int = Field(ge=1)
    interval: str = "1s"
    wait_count: int = Field(3, ge=1, alias="wait-count")
    target_duration: str = Field("5s", alias="target-duration")

    @model_validator(mode="after")
    def _ordered(self) -> AdaptOptions:
        if self.maximum < self.minimum:
            raise ValueError(f"maximum ({self.maximum}) is below minimum ({self.minimum})")
        return self

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`distributed.deploy.Cluster.adapt`."""
        return {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "interval": self.interval,
            "wait_count": self.wait_count,
            "target_duration": self.target_duration,
        }


def adapt_options(value: AdaptOptions | Mapping[str, Any] | None) -> AdaptOptions | None:
    """``value`` as :class:`AdaptOptions` (None stays None).

    Raises
    ------
    adp.errors.ConfigError
        Naming the field that is wrong.
    """
    if value is None or isinstance(value, AdaptOptions):
        return value
    try:
        return AdaptOptions.model_validate(dict(value))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(["adapt", *(str(p) for p in first["loc"])])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {message}") from None


__all__ = ["AdaptOptions", "adapt_options"]

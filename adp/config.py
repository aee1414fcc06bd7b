"""ADP configuration: ``dask.config`` defaults under the ``adp`` key and a typed view of them.

ADP never reads environment variables itself: dask.config already maps ``DASK_ADP__*``
variables onto the ``adp.*`` keys, and :func:`settings` returns a validated snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field

_DEFAULTS_FILE = Path(__file__).with_name("adp.yaml")


def _register_defaults() -> None:
    with _DEFAULTS_FILE.open() as f:
        defaults = yaml.safe_load(f)
    dask.config.update_defaults(defaults)


_register_defaults()


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ClusterSettings(_Section):
    n_workers: int = Field(2, alias="n-workers", ge=1)
    threads_per_worker: int = Field(1, alias="threads-per-worker", ge=1)
    memory_limit: str | int | None = Field("auto", alias="memory-limit")
    dashboard_address: str | None = Field(":0", alias="dashboard-address")
    install_plugins: bool = Field(True, alias="install-plugins")
    worker_environ: dict[str, str] = Field(default_factory=dict, alias="worker-environ")


class FitSettings(_Section):
    sample_rows: int = Field(100_000, alias="sample-rows", ge=1)


class ScoreSettings(_Section):
    threshold_bins: int = Field(4096, alias="threshold-bins", ge=16)


class IOSettings(_Section):
    allowed_roots: list[str] = Field(default_factory=list, alias="allowed-roots")
    allow_link_local_endpoints: bool = Field(False, alias="allow-link-local-endpoints")


class AuditSettings(_Section):
    url: str | None = None
    checkpoint_key: str | None = Field(None, alias="checkpoint-key")


class ModelSettings(_Section):
    url: str | None = None
    store: str | None = None


class Settings(_Section):
    """A validated snapshot of the ``adp`` section of dask.config."""

    state_dir: Path = Field(Path(".adp"), alias="state-dir")
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    fit: FitSettings = Field(default_factory=FitSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    io: IOSettings = Field(default_factory=IOSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)


def settings() -> Settings:
    """Return the current ``adp`` configuration as a typed, validated object.

    Returns
    -------
    Settings
        Read afresh from ``dask.config`` on every call, so ``dask.config.set`` applies.

    Raises
    ------
    adp.errors.ConfigError
        When a value has the wrong type or an unknown key is set under ``adp``.
    """
    from pydantic import ValidationError

    from adp.errors import ConfigError

    raw: dict[str, Any] = dask.config.get("adp", default={}) or {}
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid dask.config 'adp' section: {exc}") from exc

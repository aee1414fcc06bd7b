"""ADP configuration: ``dask.config`` defaults under the ``adp`` key and a typed view of them.

ADP never reads environment variables itself: dask.config already maps ``DASK_ADP__*``
variables onto the ``adp.*`` keys, and :func:`settings` returns a validated snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DEFAULTS_FILE = Path(__file__).with_name("adp.yaml")


def default_state_dir() -> Path:
    """Where ADP keeps its state when ``adp.state-dir`` is not set: the user's data
    directory (``platformdirs.user_data_dir("adp")``, e.g. ``~/.local/share/adp`` on
    Linux), so the audit trail, the model registry and staging owners are the same
    wherever a command runs from."""
    import platformdirs

    return Path(platformdirs.user_data_dir("adp", appauthor=False))


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
    warm_workers: bool = Field(True, alias="warm-workers")
    worker_environ: dict[str, str] = Field(default_factory=dict, alias="worker-environ")
    adapt: dict[str, Any] | None = None
    #: Validated where it is used, by :func:`adp.cluster.gateway.gateway_options`.
    gateway: str | dict[str, Any] | None = None


class FitSettings(_Section):
    sample_rows: int = Field(100_000, alias="sample-rows", ge=1)


class ScoreSettings(_Section):
    threshold_bins: int = Field(4096, alias="threshold-bins", ge=16)
    ship_models: bool = Field(True, alias="ship-models")


class IOSettings(_Section):
    allowed_roots: list[str] = Field(default_factory=list, alias="allowed-roots")
    allow_link_local_endpoints: bool = Field(False, alias="allow-link-local-endpoints")
    connect_timeout: float = Field(3.0, alias="connect-timeout", gt=0)
    read_timeout: float = Field(4.0, alias="read-timeout", gt=0)
    retries: int = Field(1, ge=0, le=10)
    heartbeat_seconds: float = Field(10.0, alias="heartbeat-seconds", gt=0)
    stale_seconds: float = Field(120.0, alias="stale-seconds", gt=0)

    @model_validator(mode="after")
    def _stale_after_beats(self) -> IOSettings:
        if self.stale_seconds <= 2 * self.heartbeat_seconds:
            raise ValueError(
                "adp.io.stale-seconds must exceed twice adp.io.heartbeat-seconds, "
                "or live jobs would be taken for gone"
            )
        return self


class AuditSettings(_Section):
    url: str | None = None
    signing_key: Path | None = Field(None, alias="signing-key")
    public_key: Path | None = Field(None, alias="public-key")
    anchor: str | None = None
    anchor_storage_options: dict[str, Any] = Field(
        default_factory=dict, alias="anchor-storage-options"
    )


class ModelSettings(_Section):
    url: str | None = None
    store: str | None = None


class AuthSettings(_Section):
    algorithms: list[str] = Field(default_factory=lambda: ["HS256"], min_length=1)
    audience: str = "adp"
    issuer: str = "adp"
    secret_file: Path | None = Field(None, alias="secret-file")
    public_key: Path | None = Field(None, alias="public-key")
    jwks_url: str | None = Field(None, alias="jwks-url")
    leeway: float = Field(0.0, ge=0)


class ServiceSettings(_Section):
    url: str = "http://127.0.0.1:8642"
    host: str = "127.0.0.1"
    port: int = Field(8642, ge=0, le=65535)
    database: str | None = None
    scheduler: str | None = None
    max_running: int = Field(2, alias="max-running", ge=1)
    driver: Literal["process", "thread"] = "process"
    policy: Path | None = None
    token: str | None = Field(None, repr=False)
    auth: AuthSettings = Field(default_factory=AuthSettings)


class StreamSettings(_Section):
    """Defaults of ``adp stream`` (a stream spec's ``batch`` and ``source`` override them)."""

    max_events: int = Field(10_000, alias="max-events", ge=1)
    max_wait_ms: int = Field(100, alias="max-wait-ms", ge=1)
    max_in_flight: int = Field(4, alias="max-in-flight", ge=1)
    claim_idle_ms: int = Field(30_000, alias="claim-idle-ms", ge=1)
    ack_wait_seconds: float = Field(30.0, alias="ack-wait-seconds", gt=0)
    dedupe_hours: float = Field(24.0, alias="dedupe-hours", gt=0)
    reference_scores: int = Field(10_000, alias="reference-scores", ge=100)
    threshold_audit_change: float = Field(0.1, alias="threshold-audit-change", ge=0)
    threshold_audit_seconds: float = Field(60.0, alias="threshold-audit-seconds", ge=0)
    refit_dir: str | None = Field(None, alias="refit-dir")


class FeedbackSettings(_Section):
    """Analyst feedback (:mod:`adp.feedback`): where labels live, how review picks rows."""

    url: str | None = None
    table_prefix: str = Field("adp_", alias="table-prefix")
    diverse_rows: int = Field(20_000, alias="diverse-rows", ge=10)


class RetentionSettings(_Section):
    results_days: float | None = Field(None, alias="results-days", gt=0)
    audit_days: float | None = Field(None, alias="audit-days", gt=0)


class Settings(_Section):
    """A validated snapshot of the ``adp`` section of dask.config."""

    state_dir: Path = Field(default_factory=default_state_dir, alias="state-dir")
    debug: bool = False
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    fit: FitSettings = Field(default_factory=FitSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    io: IOSettings = Field(default_factory=IOSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    #: Validated where it is used, by :func:`adp.cluster.kube_settings.kubernetes_settings`
    #: (its typed models live beside the renderer that alone reads them).
    kubernetes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("state_dir", mode="before")
    @classmethod
    def _state_dir(cls, value: object) -> object:
        """Null means the user's data directory; ``~`` is expanded and a relative path is
        made absolute (against the working directory, once, when read)."""
        if value is None or value == "":
            return default_state_dir()
        if isinstance(value, str | os.PathLike):
            return Path(os.path.expanduser(os.fspath(value))).absolute()
        return value


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

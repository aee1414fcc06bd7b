"""What ADP's Kubernetes manifests are rendered from: the ``adp.kubernetes`` config section
(:data:`DEFAULTS_YAML` documents its keys and defaults), job spec files and alert rules,
each read and checked here; :mod:`adp.cluster.manifests` turns them into objects.

The names the deployment is made of (ports, the Secret's keys, the common labels) are
constants here too: the manifests, the tests and ``cluster/README.md`` refer to them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.config
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adp.errors import ConfigError

__all__ = [
    "DEFAULTS",
    "DEFAULTS_YAML",
    "AdaptBounds",
    "JobFile",
    "KubernetesSettings",
    "Resources",
    "kubernetes_settings",
    "read_alerts",
    "read_job",
]

#: The ``adp.kubernetes`` section's keys and defaults (what ``adp/adp.yaml`` holds).
DEFAULTS_YAML = """
kubernetes:
  name: adp                      # the DaskCluster; the service is <name>-service
  namespace: null                # null: none written (kubectl's context or kustomize decides)
  image: registry.example.com/adp/adp   # with its registry; no tag: the package's version
  image-pull-policy: IfNotPresent
  secret: adp                    # the Secret with database URLs and key files (cluster/README.md)
  env: {}                        # more environment of every ADP container
  env-from: []                   # Secrets whose keys become environment (e.g. S3 credentials)
  labels: {}                     # more labels on every object (e.g. your Prometheus's selector)
  scheduler:
    resources: {requests: {cpu: "1", memory: 2Gi}, limits: {cpu: "1", memory: 2Gi}}
  worker:
    replicas: 2
    resources: {requests: {cpu: "1", memory: 4Gi}, limits: {cpu: "1", memory: 4Gi}}
    env: {}                      # over adp.cluster.worker-environ
  adapt: {minimum: 1, maximum: 20}   # the DaskAutoscaler's bounds; null: fixed replicas
  job:
    workers: 2                   # a DaskJob's workers when its spec's cluster gives none
    resources: {requests: {cpu: 500m, memory: 2Gi}, limits: {cpu: "1", memory: 2Gi}}
  service:
    resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "1", memory: 1Gi}}
  monitoring:
    interval: 30s                # how often Prometheus scrapes /metrics
"""
#: The defaults, as a mapping (:data:`DEFAULTS_YAML` parsed).
DEFAULTS: dict[str, Any] = yaml.safe_load(DEFAULTS_YAML)["kubernetes"]

PRELOAD = "adp.observe.plugins"
SCHEDULER_PORT = 8786
DASHBOARD_PORT = 8787
WORKER_DASHBOARD_PORT = 8788
#: The image's user and group (cluster/Dockerfile).
USER_ID = 1000
JOBS_DIR = "/jobs"
#: Where the init container reads the Secret's files, and where it copies them (0600).
SECRET_MOUNT = "/etc/adp/secret"  # noqa: S105 - a path
SECRETS_DIR = "/var/run/adp/secrets"
#: Environment of the pods that write the audit trail or the registry: variable -> key of
#: the Secret. The service also gets its job-state database.
SECRET_ENV = {
    "DASK_ADP__AUDIT__URL": "audit-url",
    "DASK_ADP__MODELS__URL": "models-url",
    "DASK_ADP__MODELS__STORE": "models-store",
}
SERVICE_SECRET_ENV = {"DASK_ADP__SERVICE__DATABASE": "database-url"}
#: Files of the Secret (its key is the file's name) -> the variable that points at the copy.
SECRET_FILES = {
    "audit.ed25519": "DASK_ADP__AUDIT__SIGNING_KEY",
    "audit.ed25519.pub": "DASK_ADP__AUDIT__PUBLIC_KEY",
}
SERVICE_SECRET_FILES = {"service.secret": "DASK_ADP__SERVICE__AUTH__SECRET_FILE"}
APP = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
#: A DNS-1035 label (a Service's name); the operator appends "-scheduler" to a cluster's.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 63 - len("-scheduler")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Resources(_Section):
    """A container's ``resources``: requests (cpu and memory) and limits (memory at least)."""

    requests: dict[str, str]
    limits: dict[str, str]

    @field_validator("requests", "limits", mode="before")
    @classmethod
    def _quantities(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # YAML's `cpu: 1` is an int; Kubernetes takes "1"
            return {
                str(k): str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _bounded(self) -> Resources:
        missing = [f"requests.{k}" for k in ("cpu", "memory") if k not in self.requests]
        missing += [] if "memory" in self.limits else ["limits.memory"]
        if missing:
            raise ValueError(f"needs {', '.join(missing)}")
        return self


class PodSettings(_Section):
    resources: Resources


class WorkerSettings(PodSettings):
    replicas: int = Field(ge=0)
    env: dict[str, str]


class JobSettings(PodSettings):
    workers: int = Field(ge=1)


class AdaptBounds(_Section):
    """A DaskAutoscaler's bounds."""

    minimum: int = Field(ge=0)
    maximum: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> AdaptBounds:
        if self.maximum < self.minimum:
            raise ValueError(f"maximum ({self.maximum}) is below minimum ({self.minimum})")
        return self


class MonitoringSettings(_Section):
    interval: str


class KubernetesSettings(_Section):
    """The ``adp.kubernetes`` section, validated (keys and defaults: :data:`DEFAULTS_YAML`)."""

    name: str
    namespace: str | None
    image: str
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(alias="image-pull-policy")
    secret: str
    env: dict[str, str]
    env_from: list[str] = Field(alias="env-from")
    labels: dict[str, str]
    scheduler: PodSettings
    worker: WorkerSettings
    adapt: AdaptBounds | None
    job: JobSettings
    service: PodSettings
    monitoring: MonitoringSettings

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return checked_name(value, "the name")

    @field_validator("image")
    @classmethod
    def _registry(cls, value: str) -> str:
        host = value.split("/", 1)[0] if "/" in value else ""
        if not ("." in host or ":" in host or host == "localhost"):
            raise ValueError(
                f"{value!r} names no registry: write it in full, e.g. "
                f"registry.example.com/team/{value}"
            )
        return value

    def image_ref(self, version: str) -> str:
        """The image with its tag: as configured, or tagged with ``version``."""
        last = self.image.rsplit("/", 1)[-1]
        return self.image if (":" in last or "@" in last) else f"{self.image}:{version}"


#: The init container's, which copies the Secret's files.
INIT_RESOURCES = Resources(
    requests={"cpu": "10m", "memory": "16Mi"}, limits={"cpu": "100m", "memory": "32Mi"}
)
#: A job runner serves nothing: it is alive while its scheduler (injected by the operator
#: as DASK_SCHEDULER_ADDRESS) answers, and fails rather than wait on a lost one.
RUNNER_LIVENESS = {
    "exec": {
        "command": [
            "python",
            "-c",
            "import os, socket, urllib.parse as u; "
            "a = u.urlsplit(os.environ['DASK_SCHEDULER_ADDRESS']); "
            "socket.create_connection((a.hostname, a.port), 5).close()",
        ]
    },
    "initialDelaySeconds": 30,
    "periodSeconds": 30,
    "timeoutSeconds": 10,
    "failureThreshold": 4,
}


def checked_name(value: str, what: str) -> str:
    """``value`` if it can name a DaskCluster (its scheduler Service adds ``-scheduler``).

    Raises
    ------
    ValueError
        Saying what a name may hold, ``what`` naming the value.
    """
    if not _NAME.match(value) or len(value) > _MAX_NAME:
        raise ValueError(
            f"{what} {value!r} is not a Kubernetes name: lower-case letters, digits and '-', "
            f"starting with a letter, at most {_MAX_NAME} characters"
        )
    return value


def _merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base``; ``image_pull_policy`` (from a DASK_ variable)
    is ``image-pull-policy``, but the names in ``env`` or ``labels`` stay as given."""
    out = dict(base)
    for given, value in over.items():
        key = str(given).replace("_", "-")
        key = key if key in base else str(given)
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def kubernetes_settings(raw: Mapping[str, Any] | None = None) -> KubernetesSettings:
    """The ``adp.kubernetes`` section over :data:`DEFAULTS`, validated.

    Parameters
    ----------
    raw : mapping, optional
        The section; default: ``dask.config.get("adp.kubernetes")``. Keys it leaves out
        keep their defaults (nested mappings are merged).

    Raises
    ------
    adp.errors.ConfigError
        Naming the key at fault.
    """
    if raw is None:
        raw = dask.config.get("adp.kubernetes", default={}) or {}
    try:
        return KubernetesSettings.model_validate(_merged(DEFAULTS, raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"adp.kubernetes.{where}: {message}") from None


@dataclass(frozen=True)
class JobFile:
    """A job spec file for a DaskJob.

    Attributes
    ----------
    name : str
        The DaskJob's name: the file's stem.
    text : str
        The spec as written (the ConfigMap holds it unchanged).
    path : str
        Where it was read.
    search : bool
        Whether it runs ``adp search`` (a ``search`` section and no ``output``), not
        ``adp run``.
    n_workers, threads_per_worker : int or None
        Its ``cluster`` section's shape.
    adapt : AdaptBounds or None
        Its ``cluster.adapt`` bounds.
    """

    name: str
    text: str
    path: str
    search: bool = False
    n_workers: int | None = None
    threads_per_worker: int | None = None
    adapt: AdaptBounds | None = None


def read_job(path: str | Path) -> JobFile:
    """Read a job spec file for a DaskJob (``adp validate`` checks the rest of it).

    Raises
    ------
    adp.errors.ConfigError
        When the file cannot be read or is not a YAML mapping, its name is no Kubernetes
        name, it names a scheduler address (a DaskJob runs on the cluster it creates), or
        its cluster shape is not positive integers.
    """
    where = f"job spec {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
        spec = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {where}: {exc}") from None
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} is not a YAML mapping")
    try:
        name = checked_name(Path(path).stem, "its file name")
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc} (it names the DaskJob)") from None
    cluster = spec.get("cluster") or {}
    if not isinstance(cluster, dict):
        raise ConfigError(f"{where}: 'cluster' is not a mapping")
    if cluster.get("address"):
        raise ConfigError(
            f"{where} names cluster.address: a DaskJob runs on the cluster it creates, remove it"
        )
    shape: dict[str, Any] = {}
    for key in ("n_workers", "threads_per_worker"):
        value = cluster.get(key)
        if value is not None and (type(value) is not int or value < 1):
            raise ConfigError(f"{where}: cluster.{key} must be a positive integer")
        shape[key] = value
    adapt = cluster.get("adapt")
    if adapt is not None:
        try:
            shape["adapt"] = AdaptBounds(minimum=adapt.get("minimum", 0), maximum=adapt["maximum"])
        except (AttributeError, KeyError, TypeError, ValidationError):
            raise ConfigError(
                f"{where}: cluster.adapt needs integers 0 <= minimum <= maximum, maximum >= 1"
            ) from None
    search = "search" in spec and "output" not in spec
    return JobFile(name, text, str(path), search, **shape)


def read_alerts(path: str | Path) -> list[dict[str, Any]]:
    """The PrometheusRule objects of a YAML file (other documents are left out).

    Raises
    ------
    adp.errors.ConfigError
        When the file cannot be read or holds no PrometheusRule.
    """
    try:
        docs = list(yaml.safe_load_all(Path(path).read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read alert rules {str(path)!r}: {exc}") from None
    rules = [d for d in docs if isinstance(d, dict) and d.get("kind") == "PrometheusRule"]
    if not rules:
        raise ConfigError(f"alert rules {str(path)!r} hold no PrometheusRule")
    return rules

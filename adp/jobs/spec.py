"""The job spec: a YAML file validated into typed objects.

Unknown keys and wrong types are rejected with the path of the offending field, for
example ``detector.params: Input should be a valid dictionary``. Types are strict: a
boolean is not a number (``sample_rows: true`` is refused, not read as 1), numbers are not
strings, and thresholds are finite (``score: .nan`` is refused).

Relative paths (``source.uri``, ``output.uri``, a SQLite file in a database URL,
``report.path``) are resolved on the client, against the directory ``adp`` runs in (the
current working directory, as for every path given on the command line), when the spec
is validated: every task that leaves the client carries absolute paths, so workers of a
remote scheduler do not resolve them in their own directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from adp.context.section import ContextSpec
from adp.errors import SpecError, bounded, describe_validation_errors, one_line
from adp.io.locations import resolve_location
from adp.redact import redact_url

#: An integer field: booleans, floats and strings are refused.
Int = Annotated[int, Strict()]
#: A number field: finite, no booleans or strings (integers are accepted).
Number = Annotated[float, Strict(), AllowInfNan(False)]
#: A yes/no field: only true or false.
Flag = Annotated[bool, Strict()]


def _no_duplicates(names: list[str] | None, field: str) -> list[str] | None:
    if names is None:
        return None
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]  # type: ignore[func-returns-value]
    if twice:
        raise ValueError(f"{field} names columns more than once: {bounded(dict.fromkeys(twice))}")
    return names


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Spec):
    """Where the data is and which columns play which part."""

    uri: str
    format: Literal["parquet", "csv", "json", "sql", "netcdf", "zarr"] | None = None
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    key: list[str] = Field(default_factory=list)
    columns: list[str] | None = None
    storage_options: dict[str, Any] | None = None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="reader options passed to adp.read (table, index_col, npartitions, ...)",
    )
    missing: Literal["fail", "drop", "impute_median"] = "fail"

    @field_validator("uri")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return resolve_location(value)

    @field_validator("features")
    @classmethod
    def _unique_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("names no columns: list the feature columns, or leave it out")
        return _no_duplicates(value, "features")

    @field_validator("key")
    @classmethod
    def _unique_key(cls, value: list[str]) -> list[str]:
        return _no_duplicates(value, "key") or []


class DetectorSpec(_Spec):
    """A detector by registry name and parameters, or a registered model ``name@version``."""

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> DetectorSpec:
        if (self.name is None) == (self.model is None):
            raise ValueError("give exactly one of 'name' (with 'params') or 'model'")
        if self.model is not None and self.params:
            raise ValueError("'params' cannot be combined with 'model'")
        return self


class FitSpec(_Spec):
    """How the detector is fitted."""

    sample_rows: Int | None = Field(None, ge=1)
    random_state: Int | None = None
    strategy: Literal["sample", "distributed", "bagging"] = "sample"


class ThresholdSpec(_Spec):
    """A global threshold: a contamination share (or ``auto``), or a fixed score."""

    contamination: float | Literal["auto"] | None = None
    score: Number | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ThresholdSpec:
        if self.contamination is not None and self.score is not None:
            raise ValueError("give one of 'contamination' or 'score', not both")
        return self

    @field_validator("contamination", mode="before")
    @classmethod
    def _share(cls, value: object) -> object:
        if value is None:
            return None
        from adp.detect.contamination import check_contamination  # the one validator

        return check_contamination(value, field="threshold.contamination")


class ExplainSpec(_Spec):
    """Explanations for flagged rows."""

    top_k: Int = Field(3, ge=1)


class OutputSpec(_Spec):
    """Where the scored rows go; written to a staging location and committed at the end.

    A lake location (``uri``: folder, local or ``s3://``) receives a Parquet dataset; a
    database URL with ``table`` receives a table, written idempotently (``upsert`` merges
    on the source key, so a re-run neither duplicates nor loses rows).
    """

    uri: str
    format: Literal["parquet"] = "parquet"
    mode: Literal["error", "overwrite", "upsert"] = "error"
    table: str | None = None
    storage_options: dict[str, Any] | None = None

    @field_validator("uri")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return resolve_location(value)

    @model_validator(mode="after")
    def _table_modes(self) -> OutputSpec:
        if self.mode == "upsert" and self.table is None:
            raise ValueError("mode 'upsert' needs a database output ('table')")
        return self


class AdaptSpec(_Spec):
    """Adaptive workers for the job's LocalCluster (see :mod:`adp.cluster.adaptive`)."""

    minimum: Int = Field(0, ge=0)
    maximum: Int = Field(ge=1)
    interval: str = "1s"
    wait_count: Int = Field(3, ge=1)
    target_duration: str = "5s"

    @model_validator(mode="after")
    def _ordered(self) -> AdaptSpec:
        if self.maximum < self.minimum:
            raise ValueError(f"maximum ({self.maximum}) is below minimum ({self.minimum})")
        return self


class GatewayAuthSpec(_Spec):
    """Credentials for a Dask Gateway: ``basic`` (or ``simple``) with ``username`` and
    ``password``, or ``jupyterhub`` with an API ``token``. The secrets are never shown
    (``**********`` in every dump of the spec, so the service never stores them)."""

    type: Literal["basic", "simple", "jupyterhub"]
    username: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> GatewayAuthSpec:
        if self.type == "jupyterhub" and (self.token is None or self.username is not None):
            raise ValueError("type 'jupyterhub' needs a 'token' (and no username)")
        if self.type != "jupyterhub" and (not self.username or self.token is not None):
            raise ValueError(f"type {self.type!r} needs 'username' and 'password' (no token)")
        return self


class GatewaySpec(_Spec):
    """A cluster from a Dask Gateway (see :mod:`adp.cluster.gateway`): created for the job
    and shut down after it, or the running cluster ``name`` (left running)."""

    address: str
    auth: GatewayAuthSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    adapt: AdaptSpec | None = None
    workers: Int | None = Field(None, ge=0)
    name: str | None = Field(None, min_length=1)

    @field_validator("address")
    @classmethod
    def _gateway_address(cls, value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in ("http", "https", "gateway") or not rest[:1].strip("/"):
            raise ValueError(
                f"{redact_url(value)!r} is not a gateway address: give http(s)://host:port or "
                "gateway://host:port[/cluster-name]"
            )
        return value

    @model_validator(mode="after")
    def _one_scaling(self) -> GatewaySpec:
        if self.adapt is not None and self.workers is not None:
            raise ValueError("give 'workers' (a fixed count) or 'adapt' (bounds), not both")
        return self


class ClusterSpec(_Spec):
    """The cluster: a scheduler address, a Dask Gateway, or a LocalCluster of this shape
    (which yields, with a notice, to a scheduler given on the command line or injected by
    a DaskJob)."""

    address: str | None = None
    n_workers: Int | None = Field(None, ge=1)
    threads_per_worker: Int | None = Field(None, ge=1)
    memory_limit: str | None = None
    adapt: AdaptSpec | None = None
    gateway: GatewaySpec | None = None

    @model_validator(mode="after")
    def _gateway_alone(self) -> ClusterSpec:
        if self.gateway is not None:
            local = ("address", "n_workers", "threads_per_worker", "memory_limit", "adapt")
            given = [name for name in local if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"'gateway' sizes its own cluster: move {', '.join(given)} into it "
                    "(gateway.workers, gateway.adapt, gateway.options) or drop them"
                )
        return self


class EvaluateSpec(_Spec):
    """Compare the flags with a known truth column (precision and recall in the summary).

    ``kind`` optionally names a column that says what kind of anomaly each true one is;
    the summary then gives the recall per kind.
    """

    label: str
    kind: str | None = None


class ReportSpec(_Spec):
    """The HTML report: where, and which columns give time and series for the plots."""

    path: str | None = None
    time: str | None = None
    group: str | None = None
    top: Int = Field(25, ge=1)
    series: Int = Field(4, ge=1)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        return None if value is None else resolve_location(value)


class SearchRegisterSpec(_Spec):
    name: str


class SearchSpec(_Spec):
    """Model search (``adp search JOB.yaml``): the arguments of :func:`adp.search`.

    ``register: {name: ...}`` in YAML (``registration`` in Python) registers the best model.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    space: list[Any] | dict[str, Any] | None = None
    label: str | None = None
    metric: str = "roc_auc"
    max_trials: Int = Field(50, ge=1)
    time_budget: Number | None = Field(None, gt=0)
    cv: Int = Field(3, ge=2)
    sample_rows: Int = Field(100_000, ge=1)
    random_state: Int | None = None
    strategy: Literal["random", "grid"] = "random"
    registration: SearchRegisterSpec | None = Field(None, alias="register")


class JobSpec(_Spec):
    """A whole job: source, detector, fit, threshold, explanations, output, cluster.

    Examples
    --------
    >>> spec = JobSpec.from_yaml("job.yaml")  # doctest: +SKIP
    """

    name: str = "adp-job"
    source: SourceSpec
    detector: DetectorSpec | None = None
    fit: FitSpec = Field(default_factory=FitSpec)
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    explain: ExplainSpec | None = None
    output: OutputSpec | None = None
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    evaluate: EvaluateSpec | None = None
    report: ReportSpec | None = None
    search: SearchSpec | None = None
    context: ContextSpec | None = None
    profile: Flag = Field(True, description="profile the data (one extra pass) for the summary")

    @model_validator(mode="after")
    def _runnable(self) -> JobSpec:
        if self.search is None and (self.detector is None or self.output is None):
            raise ValueError("a job needs 'detector' and 'output' (or a 'search' section)")
        if self.context is not None:
            self.context.check_job(
                search=self.search is not None,
                registered=self.detector is not None and self.detector.model is not None,
                features=self.source.features or [],
            )
        return self

    @classmethod
    def from_dict(cls, data: Any, origin: str = "job spec") -> JobSpec:
        """Validate a mapping; errors name each offending field's path."""
        if not isinstance(data, dict):
            raise SpecError(
                f"{origin}: expected a mapping at the top level, got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"{origin} is invalid: {describe_validation_errors(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Read and validate a YAML job spec (with ``yaml.safe_load``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read job spec {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"job spec {str(path)!r} is not UTF-8 text (byte {exc.start}): save it as "
                "UTF-8 YAML"
            ) from None
        return cls.from_text(text, origin=str(path))

    @classmethod
    def from_text(cls, text: str, origin: str = "job spec") -> JobSpec:
        """Validate a job spec given as YAML (or JSON, which is YAML) text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{origin} is not valid YAML: {one_line(str(exc), 200)}") from None
        return cls.from_dict(data, origin=origin)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-serialisable mapping that :meth:`from_dict` reads back
        (only the fields that were given; paths as resolved)."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

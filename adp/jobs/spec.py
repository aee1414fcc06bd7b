"""The job spec: a YAML file validated into typed objects.

Unknown keys and wrong types are rejected with the path of the offending field, for
example ``detector.params: Input should be a valid dictionary``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adp.errors import SpecError


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(_Spec):
    """Where the data is and which columns play which part."""

    uri: str
    format: str | None = None
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

    sample_rows: int | None = Field(None, ge=1)
    random_state: int | None = None
    strategy: Literal["sample", "distributed", "bagging"] = "sample"


class ThresholdSpec(_Spec):
    """A global threshold: a contamination share (or ``auto``), or a fixed score."""

    contamination: float | Literal["auto"] | None = None
    score: float | None = None

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
        from adp.detect.threshold import check_contamination  # the one validator

        return check_contamination(value, field="threshold.contamination")


class ExplainSpec(_Spec):
    """Explanations for flagged rows."""

    top_k: int = Field(3, ge=1)


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

    @model_validator(mode="after")
    def _table_modes(self) -> OutputSpec:
        if self.mode == "upsert" and self.table is None:
            raise ValueError("mode 'upsert' needs a database output ('table')")
        return self


class ClusterSpec(_Spec):
    """The cluster: a scheduler address, or a LocalCluster of this shape."""

    address: str | None = None
    n_workers: int | None = Field(None, ge=1)
    threads_per_worker: int | None = Field(None, ge=1)
    memory_limit: str | None = None


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
    top: int = Field(25, ge=1)
    series: int = Field(4, ge=1)


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
    max_trials: int = Field(50, ge=1)
    time_budget: float | None = Field(None, gt=0)
    cv: int = Field(3, ge=2)
    sample_rows: int = Field(100_000, ge=1)
    random_state: int | None = None
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
    profile: bool = Field(True, description="profile the data (one extra pass) for the summary")

    @model_validator(mode="after")
    def _runnable(self) -> JobSpec:
        if self.search is None and (self.detector is None or self.output is None):
            raise ValueError("a job needs 'detector' and 'output' (or a 'search' section)")
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
            raise SpecError(f"{origin} is invalid:\n{_describe(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobSpec:
        """Read and validate a YAML job spec (with ``yaml.safe_load``)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise SpecError(f"cannot read job spec {str(path)!r}: {exc.strerror}") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path} is not valid YAML: {exc}") from exc
        return cls.from_dict(data, origin=str(path))


def _describe(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)

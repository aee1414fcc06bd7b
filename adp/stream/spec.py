"""The stream spec: a YAML file validated into typed objects.

A stream spec names the broker to consume (``source``), the model that scores the events
(a registered ``model: name@version``, or ``fit:`` a detector on a batch source), the
threshold that flags them, where results go (``sinks``), where bad messages go
(``dead_letter``) and how events are batched. Unknown keys and wrong types are refused
with the path of the offending field, for example ``threshold.q: Input should be less
than 1``.

Example::

    name: sensors
    source: {kind: redis, url: "redis://127.0.0.1:6379/0", stream: sensors, group: adp}
    model: sensors@3
    key: [sensor]
    threshold: {kind: quantile, q: 0.995, window: 20000}
    sinks:
      sql: {url: "postgresql+psycopg://adp@db/results", table: sensor_scores}
      stream: {stream: sensor-anomalies, only_anomalies: true}
    dead_letter: {stream: sensors-dead}
    batch: {max_events: 2000, max_wait_ms: 100, max_in_flight: 4}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from adp.errors import SpecError, bounded, one_line
from adp.redact import redact_url
from adp.stream.spec_base import (
    Int,
    Number,
    SpecModel,
    absolute_location,
    describe_errors,
    unique_names,
)
from adp.stream.window_spec import WindowSpec, WindowStateSpec

BROKERS: tuple[str, ...] = ("redis", "nats", "kafka")
THRESHOLDS: tuple[str, ...] = ("fitted", "fixed", "quantile", "spot")


class BrokerSpec(SpecModel):
    """The broker the events come from (and the sinks' and dead letters' streams go to).

    ``stream`` is the Redis stream key, the NATS JetStream stream name or the Kafka topic.
    ``group`` is the Redis consumer group or the Kafka ``group.id``; ``consumer`` the
    Redis consumer name (default: this host's name, so a restarted consumer resumes its
    own pending messages at once); ``durable`` the NATS durable consumer (default: the
    group); ``subject`` the NATS subject filter (default: every subject of the stream);
    ``field`` the Redis entry field holding the JSON event. A new group or consumer starts
    at the ``earliest`` event still in the stream, or at the ``latest`` (new events only).
    """

    kind: Literal["redis", "nats", "kafka"]
    url: str = Field(min_length=1)
    stream: str = Field(min_length=1)
    subject: str | None = Field(None, min_length=1)
    group: str = Field("adp", min_length=1)
    consumer: str | None = Field(None, min_length=1)
    durable: str | None = Field(None, min_length=1)
    field: str = Field("data", min_length=1)
    start: Literal["earliest", "latest"] = "earliest"
    claim_idle_ms: Int | None = Field(None, ge=1)
    ack_wait_seconds: Number | None = Field(None, gt=0)
    options: dict[str, Any] = Field(
        default_factory=dict, description="client options (Kafka: librdkafka settings)"
    )

    @model_validator(mode="after")
    def _fits_kind(self) -> BrokerSpec:
        scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
        expected = {"redis": ("redis", "rediss", "unix"), "nats": ("nats", "tls", "ws", "wss")}
        allowed = expected.get(self.kind)
        if allowed is not None and scheme not in allowed:
            raise ValueError(
                f"url {redact_url(self.url)!r} is not a {self.kind} URL: use "
                f"{allowed[0]}://host:port"
            )
        if self.kind != "nats" and (self.subject or self.durable):
            raise ValueError(f"'subject' and 'durable' are for NATS, not {self.kind}")
        if self.kind != "redis" and self.consumer:
            raise ValueError(f"'consumer' is for Redis, not {self.kind}")
        if self.kind != "kafka" and self.options:
            raise ValueError(f"'options' are for Kafka, not {self.kind}")
        return self

    def shown(self) -> str:
        """Where the events come from, for messages and audit records (no password)."""
        return f"{self.kind}:{redact_url(self.url)}#{self.stream}"


class BatchSourceSpec(SpecModel):
    """A batch source to fit or calibrate on, read with :func:`adp.read`."""

    uri: str = Field(min_length=1)
    format: Literal["parquet", "csv", "json", "sql", "netcdf", "zarr"] | None = None
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    key: list[str] = Field(default_factory=list)
    storage_options: dict[str, Any] | None = None
    options: dict[str, Any] = Field(
        default_factory=dict, description="reader options (table, index_col, npartitions, ...)"
    )

    @field_validator("uri")
    @classmethod
    def _absolute_uri(cls, value: str) -> str:
        return absolute_location(value)

    @field_validator("features")
    @classmethod
    def _some_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("names no columns: list the feature columns, or leave it out")
        return None if value is None else unique_names(value, "features")


class DetectorChoice(SpecModel):
    """A detector by its registry name and parameters (``adp detectors`` lists them)."""

    name: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class FitSpec(SpecModel):
    """Fit a detector on a batch source before consuming (the normal estimator,
    :func:`adp.create_detector` ``(...).fit(ddf)``)."""

    source: BatchSourceSpec
    detector: DetectorChoice
    sample_rows: Int | None = Field(None, ge=1)
    random_state: Int | None = None
    missing: Literal["fail", "drop", "impute_median"] = "fail"


class ThresholdSpec(SpecModel):
    """How a score becomes a flag.

    - ``fitted`` (default): the exact global threshold of the model's contamination (or
      ``contamination``) over the scores of a batch source: ``source``, else the fit
      source, else a ``threshold`` number in the registered version's metadata. The same
      threshold a batch job over that source flags with.
    - ``fixed``: ``score``.
    - ``quantile``: the ``q`` quantile of the last ``window`` scores.
    - ``spot``: an extreme-value threshold (SPOT, Siffer et al., KDD 2017): a generalized
      Pareto tail fitted above the ``level`` quantile of the last ``window`` normal scores,
      placed where the probability of a higher score is ``q``.

    The adaptive kinds start from the training scores when a batch source gives them
    (else they flag nothing until ``warmup`` scores were seen), and are updated after each
    micro-batch, which is flagged with the threshold as it stood before it.
    """

    kind: Literal["fitted", "fixed", "quantile", "spot"] = "fitted"
    contamination: float | Literal["auto"] | None = None
    score: Number | None = None
    source: BatchSourceSpec | None = None
    q: Number | None = Field(None, gt=0, lt=1)
    level: Number = Field(0.98, gt=0, lt=1)
    window: Int = Field(10_000, ge=10)
    warmup: Int = Field(100, ge=10)

    @field_validator("contamination", mode="before")
    @classmethod
    def _share(cls, value: object) -> object:
        if value is None:
            return None
        from adp.detect.threshold import check_contamination  # the one validator

        return check_contamination(value, field="threshold.contamination")

    @model_validator(mode="after")
    def _complete(self) -> ThresholdSpec:
        if self.kind == "fixed" and self.score is None:
            raise ValueError("kind 'fixed' needs 'score'")
        if self.kind != "fixed" and self.score is not None:
            raise ValueError(f"'score' is for kind 'fixed', not {self.kind!r}")
        if self.kind in ("quantile", "spot") and self.q is None:
            example = "0.995" if self.kind == "quantile" else "0.0001 (the risk)"
            raise ValueError(f"kind {self.kind!r} needs 'q', e.g. q: {example}")
        if self.kind in ("fitted", "fixed") and self.q is not None:
            raise ValueError(f"'q' is for kinds 'quantile' and 'spot', not {self.kind!r}")
        if self.warmup > self.window:
            raise ValueError(f"warmup ({self.warmup}) exceeds window ({self.window})")
        return self


class StreamSinkSpec(SpecModel):
    """Results published to a stream on the source's broker (a Redis stream key, a NATS
    subject that a JetStream stream captures, a Kafka topic), idempotently by message id."""

    stream: str = Field(min_length=1)
    only_anomalies: bool = False
    maxlen: Int | None = Field(None, ge=1, description="Redis: trim the stream to about this")


class SqlSinkSpec(SpecModel):
    """Results inserted into a table (created when missing), one row per message id."""

    url: str = Field(min_length=1)
    table: str = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        return absolute_location(value)

    @field_validator("table")
    @classmethod
    def _identifier(cls, value: str) -> str:
        from adp.db import check_identifier

        return check_identifier(value, "sinks.sql.table")


class SinksSpec(SpecModel):
    """Where results go; a message is acknowledged only after every sink committed it."""

    stream: StreamSinkSpec | None = None
    sql: SqlSinkSpec | None = None

    @model_validator(mode="after")
    def _some(self) -> SinksSpec:
        if self.stream is None and self.sql is None:
            raise ValueError("give 'sql' and/or 'stream': results need somewhere to go")
        return self


class DeadLetterSpec(SpecModel):
    """The stream (Redis key, NATS subject, Kafka topic) bad messages go to, each with the
    reason it could not be scored."""

    stream: str = Field(min_length=1)


class BatchSpec(SpecModel):
    """Micro-batching: at most ``max_events`` per batch, waiting at most ``max_wait_ms``
    for it to fill, at most ``max_in_flight`` batches scored at once (defaults:
    ``adp.stream.*``)."""

    max_events: Int | None = Field(None, ge=1)
    max_wait_ms: Int | None = Field(None, ge=1)
    max_in_flight: Int | None = Field(None, ge=1)


class DriftSpec(SpecModel):
    """Compare the last ``window`` scores with the training scores every ``every``
    events: the population stability index (``psi``, drift above ``limit``, default 0.2)
    or the two-sample Kolmogorov-Smirnov test (``ks``, drift below the p-value
    ``limit``, default 0.001). With ``refit: true``, drift also writes a refit job spec
    (the model fitted again on the spec's batch source) for the ADP service to run."""

    method: Literal["psi", "ks"] = "psi"
    window: Int = Field(5000, ge=100)
    every: Int = Field(5000, ge=1)
    limit: Number | None = Field(None, gt=0)
    refit: bool = False


class ClusterSpec(SpecModel):
    """The Dask cluster that scores: a scheduler address, or a LocalCluster of this shape."""

    address: str | None = None
    n_workers: Int | None = Field(None, ge=1)
    threads_per_worker: Int | None = Field(None, ge=1)
    memory_limit: str | None = None


class StreamSpec(SpecModel):
    """A whole stream: source, model, threshold, sinks, dead letters, batching, cluster.

    Examples
    --------
    >>> spec = StreamSpec.from_yaml("stream.yaml")  # doctest: +SKIP
    """

    name: str = Field("adp-stream", min_length=1)
    source: BrokerSpec
    model: str | None = Field(None, min_length=1)
    fit: FitSpec | None = None
    features: list[str] | None = None
    key: list[str] = Field(default_factory=list)
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    sinks: SinksSpec
    dead_letter: DeadLetterSpec
    batch: BatchSpec = Field(default_factory=BatchSpec)
    drift: DriftSpec | None = None
    window: WindowSpec | None = None
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)

    @field_validator("features")
    @classmethod
    def _some_features(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("names no columns: list the feature columns, or leave it out")
        return None if value is None else unique_names(value, "features")

    @field_validator("key")
    @classmethod
    def _key_names(cls, value: list[str]) -> list[str]:
        from adp.db import check_identifier

        for name in value:
            check_identifier(name, "key column")
        if "message_id" in value:
            raise ValueError("'message_id' is the result's own column: rename that key")
        return unique_names(value, "key")

    @model_validator(mode="after")
    def _one_model(self) -> StreamSpec:
        if (self.model is None) == (self.fit is None):
            raise ValueError("give exactly one of 'model' (name@version) or 'fit'")
        if (
            self.window is not None
            and self.window.state is None
            and self.source.kind != "redis"
            and self.sinks.sql is None
        ):
            raise ValueError(
                "window.state: give url (Redis or SQL) where the windows persist; the "
                "default (the Redis source, or the SQL sink's database) is not at hand"
            )
        if self.window is not None:
            clash = sorted(set(self.window.columns) & set(self.window.by))
            if clash:
                raise ValueError(f"window: {bounded(clash)} are in both 'by' and 'columns'")
        if (
            self.drift is not None
            and self.drift.refit
            and self.fit is None
            and self.threshold.source is None
        ):
            raise ValueError(
                "drift.refit: needs a batch source to fit on: fit the model in the spec "
                "('fit'), or give threshold.source"
            )
        return self

    def window_location(self) -> tuple[Literal["redis", "sql"], str, str]:
        """Where the per-key windows persist: ``("redis", url, hash key)`` or ``("sql",
        url, table)``: ``window.state``, else a hash beside the Redis source stream, else
        a table in the SQL sink's database. Read by the runner that opens the store and
        by the service's policy check, so both name the same place."""
        from adp.db import is_sql_url

        assert self.window is not None
        state, source = self.window.state, self.source
        default_key = f"{source.stream}:adp-windows:{source.group}"
        if state is None:
            if source.kind == "redis":
                return "redis", source.url, default_key
            assert self.sinks.sql is not None  # refused by the spec's validator otherwise
            return "sql", self.sinks.sql.url, "adp_stream_windows"
        if is_sql_url(state.url):
            return "sql", state.url, state.table
        return "redis", state.url, state.key or default_key

    def batch_settings(self) -> tuple[int, int, int]:
        """``(max_events, max_wait_ms, max_in_flight)``, the spec's or ``adp.stream.*``."""
        from adp.config import settings

        cfg = settings().stream
        b = self.batch
        return (
            b.max_events if b.max_events is not None else cfg.max_events,
            b.max_wait_ms if b.max_wait_ms is not None else cfg.max_wait_ms,
            b.max_in_flight if b.max_in_flight is not None else cfg.max_in_flight,
        )

    @classmethod
    def from_dict(cls, data: Any, origin: str = "stream spec") -> StreamSpec:
        """Validate a mapping; errors name each offending field's path."""
        if not isinstance(data, dict):
            raise SpecError(
                f"{origin}: expected a mapping at the top level, got {type(data).__name__}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"{origin} is invalid: {describe_errors(exc)}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> StreamSpec:
        """Read and validate a YAML stream spec (with ``yaml.safe_load``)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot read stream spec {str(path)!r}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise SpecError(
                f"stream spec {str(path)!r} is not UTF-8 text (byte {exc.start}): save it as "
                "UTF-8 YAML"
            ) from None
        return cls.from_text(text, origin=str(path))

    @classmethod
    def from_text(cls, text: str, origin: str = "stream spec") -> StreamSpec:
        """Validate a stream spec given as YAML (or JSON, which is YAML) text."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{origin} is not valid YAML: {one_line(str(exc), 200)}") from None
        return cls.from_dict(data, origin=origin)

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-serialisable mapping that :meth:`from_dict` reads back."""
        return self.model_dump(mode="json", exclude_unset=True)


__all__ = [
    "BROKERS",
    "THRESHOLDS",
    "BatchSourceSpec",
    "BatchSpec",
    "BrokerSpec",
    "ClusterSpec",
    "DeadLetterSpec",
    "DetectorChoice",
    "DriftSpec",
    "FitSpec",
    "SinksSpec",
    "SqlSinkSpec",
    "StreamSinkSpec",
    "StreamSpec",
    "ThresholdSpec",
    "WindowSpec",
    "WindowStateSpec",
]

"""The registry's metadata: one SQL table of model versions, through SQLAlchemy Core.

SQLite by default (``sqlite:///<state-dir>/models.db``), PostgreSQL or any SQLAlchemy
database by URL (``adp.models.url``). Table names are ``<prefix>model_versions``; the prefix
(and an optional schema) are validated identifiers, never interpolated user text. Versions
count from 1 per model name; two registrations racing for the same number are separated by
the unique constraint on (name, version), and the loser retries with the next number.

Lineage: a version learned from another (:mod:`adp.feedback`) records its ``parent``
(``name@version``), the SHA-256 of the label set it learned from (``label_sha256``) and the
``method``. The three columns are nullable and added to a table created before they existed
(:data:`LINEAGE_COLUMNS`), so older registries keep working.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adp.db import check_identifier, engine_for, parse_url
from adp.errors import ConfigError, ModelNotFoundError
from adp.redact import redact_url

STAGES: tuple[str, ...] = ("none", "staging", "production", "archived")
"""Lifecycle stages of a model version; new versions start at ``"none"``."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_model_name(name: str) -> str:
    """Return ``name`` if it is a valid model name (it becomes part of a storage path)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ConfigError(
            f"model name {name!r} is not valid: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '@', '/' or '..')"
        )
    return name


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; use one of {list(STAGES)}")
    return stage


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and non-finite floats made JSON-safe."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model: what it is, where it came from, where it lives."""

    name: str
    version: int
    stage: str
    detector: str
    params: dict[str, Any]
    contamination: float | str
    features: list[str]
    artifact_uri: str
    sha256: str
    size_bytes: int
    created_at: dt.datetime
    created_by: str
    source: str | None = None
    fingerprint: str | None = None
    sample_rows: int | None = None
    rows_seen: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    stage_changed_at: dt.datetime | None = None
    #: Lineage: the version this one was learned from (``name@version``), the SHA-256 of
    #: the label set it learned from, and how (``"threshold"``, ``"semi_supervised"``, ...).
    parent: str | None = None
    label_sha256: str | None = None
    method: str | None = None

    @property
    def ref(self) -> str:
        """``name@version``, as job specs and :func:`adp.models.load_detector` take it."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("created_at", "stage_changed_at"):
            if out[key] is not None:
                out[key] = out[key].isoformat()
        return out


#: Columns added after the table's first release, with their types: added (nullable) to an
#: existing table when a :class:`Catalog` opens it.
LINEAGE_COLUMNS: dict[str, sa.types.TypeEngine[Any]] = {
    "parent": sa.String(160),
    "label_sha256": sa.String(64),
    "method": sa.String(64),
}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class Catalog:
    """Model-version metadata in a SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///.adp/models.db`` or
        ``postgresql+psycopg://user@host:5432/db``.
    table_prefix : str
        Prefix of the table name (``<prefix>model_versions``); a SQL identifier.
    schema : str, optional
        Database schema (PostgreSQL) holding the table.
    """

    def __init__(self, url: str, table_prefix: str = "adp_", schema: str | None = None) -> None:
        from adp.config import settings

        if table_prefix:
            check_identifier(table_prefix, "table prefix")
        if schema is not None:
            check_identifier(schema, "schema")
        self.url = str(url)
        self.engine: Engine = _engine(self.url, settings().state_dir)
        self.metadata = sa.MetaData(schema=schema)
        self.table = sa.Table(
            f"{table_prefix}model_versions",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer, nullable=False),
            sa.Column("stage", sa.String(16), nullable=False, default="none"),
            sa.Column("detector", sa.String(128), nullable=False),
            sa.Column("params", sa.JSON, nullable=False),
            sa.Column("contamination", sa.JSON, nullable=False),  # a share or "auto"
            sa.Column("features", sa.JSON, nullable=False),
            sa.Column("source", sa.Text),
            sa.Column("fingerprint", sa.String(128)),
            sa.Column("sample_rows", sa.BigInteger),
            sa.Column("rows_seen", sa.BigInteger),
            sa.Column("metrics", sa.JSON, nullable=False),
            sa.Column("versions", sa.JSON, nullable=False),
            sa.Column("user_metadata", sa.JSON, nullable=False),
            sa.Column("artifact_uri", sa.Text, nullable=False),
            sa.Column("sha256", sa.String(64), nullable=False),
            sa.Column("size_bytes", sa.BigInteger, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("created_by", sa.String(128), nullable=False),
            sa.Column("stage_changed_at", sa.DateTime(timezone=True)),
            *(sa.Column(name, kind) for name, kind in LINEAGE_COLUMNS.items()),
            sa.UniqueConstraint("name", "version", name=f"{table_prefix}model_name_version"),
        )
        self.metadata.create_all(self.engine, checkfirst=True)
        self._add_lineage_columns()

    def _add_lineage_columns(self) -> None:
        """Add the :data:`LINEAGE_COLUMNS` a table made by an older ADP lacks (nullable, so
        its rows read as having no lineage). Names are fixed identifiers; a concurrent
        opener that added them first is fine."""
        table = self.table
        existing = {
            c["name"] for c in sa.inspect(self.engine).get_columns(table.name, table.schema)
        }
        missing = [name for name in LINEAGE_COLUMNS if name not in existing]
        if not missing:
            return
        preparer = self.engine.dialect.identifier_preparer
        target = preparer.format_table(table)
        for name in missing:
            kind = LINEAGE_COLUMNS[name].compile(dialect=self.engine.dialect)
            try:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(
                        f"ALTER TABLE {target} ADD COLUMN {preparer.quote(name)} {kind}"
                    )
            except sa.exc.SQLAlchemyError:
                columns = sa.inspect(self.engine).get_columns(table.name, table.schema)
                if name not in {c["name"] for c in columns}:
                    raise

    def __repr__(self) -> str:
        return f"Catalog({self.engine.url.render_as_string(hide_password=True)!r})"

    @property
    def safe_url(self) -> str:
        """The database URL with its password hidden."""
        return str(redact_url(self.url))

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    def drop(self) -> None:
        """Drop the table (tests and teardown)."""
        self.metadata.drop_all(self.engine)
        self.engine.dispose()

    def next_version(self, conn: Connection, name: str) -> int:
        query = sa.select(sa.func.max(self.table.c.version)).where(self.table.c.name == name)
        current = conn.execute(query).scalar()
        return int(current or 0) + 1

    def insert(self, conn: Connection, record: ModelVersion) -> None:
        """Insert ``record``; raises :class:`sqlalchemy.exc.IntegrityError` if taken."""
        values = record.to_dict()
        values["user_metadata"] = jsonable(values.pop("metadata"))
        values["created_at"] = record.created_at
        values["stage_changed_at"] = record.stage_changed_at
        for key in ("params", "metrics", "versions", "features"):
            values[key] = jsonable(values[key])
        conn.execute(self.table.insert().values(**values))

    def _record(self, row: Any) -> ModelVersion:
        m = row._mapping
        return ModelVersion(
            name=m["name"],
            version=int(m["version"]),
            stage=m["stage"],
            detector=m["detector"],
            params=dict(m["params"] or {}),
            contamination=m["contamination"],
            features=list(m["features"] or []),
            artifact_uri=m["artifact_uri"],
            sha256=m["sha256"],
            size_bytes=int(m["size_bytes"]),
            created_at=_utc(m["created_at"]),  # type: ignore[arg-type]
            created_by=m["created_by"],
            source=redact_url(m["source"]),  # rows from before redaction, too
            fingerprint=m["fingerprint"],
            sample_rows=m["sample_rows"],
            rows_seen=m["rows_seen"],
            metrics=dict(m["metrics"] or {}),
            versions=dict(m["versions"] or {}),
            metadata=dict(m["user_metadata"] or {}),
            stage_changed_at=_utc(m["stage_changed_at"]),
            parent=m["parent"],
            label_sha256=m["label_sha256"],
            method=m["method"],
        )

    def versions(self, name: str | None = None, stage: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``, in ``stage``), by name then version."""
        t = self.table
        query = sa.select(t).order_by(t.c.name, t.c.version)
        if name is not None:
            query = query.where(t.c.name == name)
        if stage is not None:
            query = query.where(t.c.stage == check_stage(stage))
        with self.engine.connect() as conn:
            return [self._record(row) for row in conn.execute(query)]

    def resolve(self, name: str, version: int | str = "latest") -> ModelVersion:
        """Find a version by number, ``"latest"``, or stage (the newest in that stage).

        Raises
        ------
        adp.errors.ModelNotFoundError
            Naming what exists instead.
        """
        t = self.table
        query = sa.select(t).where(t.c.name == name)
        wanted = _parse_version(version)
        if isinstance(wanted, int):
            query = query.where(t.c.version == wanted)
        elif wanted != "latest":
            query = query.where(t.c.stage == wanted)
        query = query.order_by(t.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise ModelNotFoundError(self._not_found(name, wanted))
        return self._record(row)

    def _not_found(self, name: str, wanted: int | str) -> str:
        existing = self.versions(name)
        if not existing:
            names = sorted({v.name for v in self.versions()})
            shown = ", ".join(names[:20]) if names else "none yet"
            return f"no model named {name!r} is registered (registered models: {shown})"
        versions = ", ".join(f"{v.version} ({v.stage})" for v in existing)
        what = f"version {wanted}" if isinstance(wanted, int) else f"a version in {wanted!r}"
        return f"model {name!r} has no {what}; its versions: {versions}"

    def set_stage(
        self, name: str, version: int, stage: str, archive_existing: bool = True
    ) -> ModelVersion:
        """Move a version to ``stage``; with ``archive_existing``, a promotion to production
        archives the versions of ``name`` that were in production."""
        check_stage(stage)
        record = self.resolve(name, int(version))
        t = self.table
        now = dt.datetime.now(dt.UTC)
        with self.begin() as conn:
            if stage == "production" and archive_existing:
                conn.execute(
                    t.update()
                    .where(t.c.name == name, t.c.stage == "production", t.c.version != version)
                    .values(stage="archived", stage_changed_at=now)
                )
            conn.execute(
                t.update()
                .where(t.c.name == name, t.c.version == record.version)
                .values(stage=stage, stage_changed_at=now)
            )
        return self.resolve(name, record.version)


def _parse_version(version: int | str) -> int | str:
    if isinstance(version, bool):
        raise ConfigError(f"invalid model version {version!r}")
    if isinstance(version, int):
        if version < 1:
            raise ConfigError(f"model versions start at 1, got {version}")
        return version
    text = str(version).strip()
    if text.isdigit():
        return _parse_version(int(text))
    if text == "latest" or text in STAGES:
        return text
    raise ConfigError(
        f"invalid model version {version!r}: use a number, 'latest' or a stage {list(STAGES)}"
    )


def _engine(url: str, state_dir: Path) -> Engine:
    """A private engine (the catalog disposes of it) through the one SQL base: a SQLite
    file is created in its directory, inside the allowed roots or the state directory."""
    parsed = parse_url(url, what="model registry URL", state_dir=state_dir)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return engine_for(parsed, what="model registry URL", state_dir=state_dir, shared=False)


__all__ = [
    "LINEAGE_COLUMNS",
    "STAGES",
    "Catalog",
    "ModelVersion",
    "check_identifier",
    "check_model_name",
    "check_stage",
    "jsonable",
]

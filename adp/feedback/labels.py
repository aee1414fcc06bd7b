"""The label store: analysts' answers about scored rows, with who gave them and when.

One SQL table, ``<prefix>labels`` (``adp.feedback.table-prefix``, default ``adp_``), in
SQLite by default (``sqlite:///<state-dir>/feedback.db``) or any SQLAlchemy database by URL
(``adp.feedback.url``; PostgreSQL is tested). Each row is one answer: the model (name and
the version the analyst was shown), the row's key (:mod:`adp.feedback.keys`), the label
(``anomaly``, ``normal`` or ``unsure``), who, when and an optional note.

Labels attach to rows by key under a model *name*, so they survive new versions: a model
learned from them, or re-fitted, finds them again. A row labelled twice keeps both answers
(the history is provenance); the latest one counts.

Every label is audited (:meth:`adp.observe.audit.AuditLog.append`, event ``feedback.label``,
with the analyst's identity) inside the label's own transaction: when the audit record
cannot be written, the label is not stored.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adp.db import check_identifier, engine_for, parse_url, safe_url, write_transaction
from adp.errors import ConfigError, DataError
from adp.feedback.keys import key_digest, key_text, parse_key
from adp.models.metadata import check_model_name

#: The answers an analyst can give. ``unsure`` rows are reviewed (not offered again) but
#: never used as training targets.
LABELS: tuple[str, ...] = ("anomaly", "normal", "unsure")
#: Training targets of the labels that have one (1 for an anomaly, as in PyOD).
TARGETS: dict[str, int] = {"anomaly": 1, "normal": 0}
_WHO_MAX = 200
_NOTE_MAX = 2000


def check_label(label: str) -> str:
    """Return ``label`` if it is one of :data:`LABELS`, else refuse it naming them."""
    if label not in LABELS:
        raise ConfigError(f"label {label!r} is not one of {', '.join(LABELS)}")
    return label


def _who(who: str | None) -> str:
    if who is None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):  # no passwd entry (some containers)
            who = f"uid:{os.getuid()}"
    who = str(who).strip()
    if not who or len(who) > _WHO_MAX:
        raise ConfigError(f"who must name the analyst in 1-{_WHO_MAX} characters, got {who!r}")
    return who


def _note(note: str | None) -> str | None:
    if note is None or not str(note).strip():
        return None
    if len(note) > _NOTE_MAX:
        raise ConfigError(f"the note has {len(note)} characters; keep it to {_NOTE_MAX}")
    return str(note)


def _version(version: int | None) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"model version must be a number from 1, got {version!r}")
    return version


@dataclass(frozen=True)
class Label:
    """One analyst's answer about one row.

    Attributes
    ----------
    model : str
        The model name the row was scored by (labels apply to all its versions).
    version : int or None
        The version the analyst was shown, when known.
    row_key : str
        The row's key text (:func:`adp.feedback.keys.key_text`).
    label : {"anomaly", "normal", "unsure"}
    who : str
        The analyst's identity.
    created_at : datetime
        When (UTC).
    note : str or None
    id : int
        The store's row number (answers are numbered in the order given).
    """

    model: str
    version: int | None
    row_key: str
    label: str
    who: str
    created_at: dt.datetime
    note: str | None = None
    id: int = 0

    @property
    def target(self) -> int | None:
        """1 for ``anomaly``, 0 for ``normal``, ``None`` for ``unsure``."""
        return TARGETS.get(self.label)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["created_at"] = self.created_at.isoformat()
        return out


def label_set_sha256(labels: Iterable[Label]) -> str:
    """The SHA-256 of a label set: what a learned model records as its lineage.

    The hash covers each row's key and label (sorted by key), not who gave it or when, so
    the same answers give the same hash wherever they were stored.
    """
    pairs = sorted((lab.row_key, lab.label) for lab in labels)
    digest = hashlib.sha256()
    for key, label in pairs:
        digest.update(json.dumps([key, label], separators=(",", ":")).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def labels_url(url: str | None, state_dir: Path) -> str:
    """The label database's URL: ``url``, ``adp.feedback.url``, else SQLite in the state
    directory."""
    from adp.config import settings

    return str(url or settings().feedback.url or f"sqlite:///{state_dir / 'feedback.db'}")


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class LabelStore:
    """Analysts' labels in a SQL database, each one audited.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL; default ``adp.feedback.url``, else
        ``sqlite:///<adp.state-dir>/feedback.db``.
    table_prefix : str, optional
        Prefix of the table's name (``<prefix>labels``); default
        ``adp.feedback.table-prefix``. A plain SQL identifier.
    audit_log : adp.observe.audit.AuditLog, optional
        Where labels are audited; default the configured audit log, opened on first use.

    Raises
    ------
    adp.errors.ConfigError
        For an invalid URL or prefix.
    adp.errors.AccessDeniedError
        For a SQLite file outside ``adp.io.allowed-roots`` and the state directory.

    Examples
    --------
    >>> store = LabelStore()  # doctest: +SKIP
    >>> store.add("sensors", {"sensor_id": "a7", "ts": "2026-03-01T12:00:00"}, "anomaly",
    ...           version=3, who="alice", note="valve stuck")  # doctest: +SKIP
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        table_prefix: str | None = None,
        audit_log: Any = None,
    ) -> None:
        from adp.config import settings

        cfg = settings()
        state_dir = Path(cfg.state_dir)
        prefix = cfg.feedback.table_prefix if table_prefix is None else table_prefix
        if prefix:
            check_identifier(prefix, "label table prefix")
        raw = labels_url(url, state_dir)
        parsed = parse_url(raw, what="label database URL", state_dir=state_dir)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.url = safe_url(parsed)
        self.engine: Engine = engine_for(
            parsed,
            what="label database URL",
            state_dir=state_dir,
            shared=False,
            sqlite_wal=True,
            sqlite_immediate=False,
        )
        self._audit = audit_log
        self._own_audit = audit_log is None
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            f"{prefix}labels",
            self.metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("model", sa.String(128), nullable=False),
            sa.Column("version", sa.Integer),
            sa.Column("key_sha256", sa.String(64), nullable=False),
            sa.Column("row_key", sa.Text, nullable=False),
            sa.Column("label", sa.String(16), nullable=False),
            sa.Column("who", sa.String(_WHO_MAX), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("note", sa.Text),
            sa.Index(f"ix_{prefix}labels_model_key", "model", "key_sha256"),
        )
        self.metadata.create_all(self.engine, checkfirst=True)

    def __repr__(self) -> str:
        return f"LabelStore({self.url!r}, table={self.table.name!r})"

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections (and the audit log this store opened)."""
        self.engine.dispose()
        if self._own_audit and self._audit is not None:
            self._audit.close()
            self._audit = None

    def drop(self) -> None:
        """Drop the table (tests and teardown)."""
        self.metadata.drop_all(self.engine)
        self.engine.dispose()

    @property
    def audit_log(self) -> Any:
        """The audit log labels are recorded in (opened on first use)."""
        if self._audit is None:
            from adp.observe.audit import AuditLog

            self._audit = AuditLog()
        return self._audit

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    # -- writing ---------------------------------------------------------------------------
    def add(
        self,
        model: str,
        key: str | Mapping[str, Any],
        label: str,
        *,
        version: int | None = None,
        who: str | None = None,
        note: str | None = None,
        key_columns: Sequence[str] | None = None,
    ) -> Label:
        """Store one analyst's label of one row, audited.

        Parameters
        ----------
        model : str
            The model name (``name``; a ``name@version`` reference sets ``version``).
        key : str or mapping
            The row's key: a mapping of key column to value, or its JSON text.
        label : {"anomaly", "normal", "unsure"}
        version : int, optional
            The model version the analyst was shown.
        who : str, optional
            The analyst's identity (the service's verified caller); default the
            operating-system user.
        note : str, optional
            Why (at most 2000 characters). Kept in the store, not in the audit trail.
        key_columns : sequence of str, optional
            The output's key columns, to check ``key`` against.

        Returns
        -------
        Label

        Raises
        ------
        adp.errors.ConfigError
            For an invalid model name, label, key, version, identity or note.
        adp.errors.AuditError
            When the audit record cannot be written: the label is not stored.
        """
        return self.add_many(
            model, [(key, label)], version=version, who=who, note=note, key_columns=key_columns
        )[0]

    def add_many(
        self,
        model: str,
        answers: Iterable[tuple[str | Mapping[str, Any], str]],
        *,
        version: int | None = None,
        who: str | None = None,
        note: str | None = None,
        key_columns: Sequence[str] | None = None,
    ) -> list[Label]:
        """Store several labels from one analyst in one transaction, each one audited.

        Parameters
        ----------
        answers : iterable of (key, label)
            As :meth:`add` takes them.

        Returns
        -------
        list of Label
            In the order given.
        """
        name, version = _model_and_version(model, version)
        who = _who(who)
        note = _note(note)
        now = dt.datetime.now(dt.UTC)
        checked = [(_key(key, key_columns), check_label(label)) for key, label in answers]
        # not "model:name@2": redaction would read "name" as the password of a URL
        resource = f"models/{name}" if version is None else f"models/{name}@{version}"
        out = []
        with self._write() as conn:
            for text, label in checked:
                row = {
                    "model": name,
                    "version": version,
                    "key_sha256": key_digest(text),
                    "row_key": text,
                    "label": label,
                    "who": who,
                    "created_at": now,
                    "note": note,
                }
                ident = conn.execute(self.table.insert().values(**row)).inserted_primary_key
                # Inside the label's transaction: no audit record, no label.
                self.audit_log.append(
                    "feedback.label",
                    action="label",
                    resource=resource,
                    identity=who,
                    details={"row": text, "label": label, "note": note is not None},
                    source="api",
                )
                number = int(ident[0]) if ident else 0
                out.append(Label(name, version, text, label, who, now, note, number))
        return out

    # -- reading ---------------------------------------------------------------------------
    def _query(self, model: str | None, history: bool) -> sa.Select[Any]:
        t = self.table
        query = sa.select(t)
        if model is not None:
            query = query.where(t.c.model == check_model_name(model))
        if not history:  # the latest answer for each (model, row)
            latest = sa.select(sa.func.max(t.c.id)).group_by(t.c.model, t.c.key_sha256)
            if model is not None:
                latest = latest.where(t.c.model == model)
            query = query.where(t.c.id.in_(latest.scalar_subquery()))
        return query.order_by(t.c.id)

    def labels(self, model: str | None = None, *, history: bool = False) -> list[Label]:
        """The labels (of ``model``), oldest first.

        Parameters
        ----------
        model : str, optional
            Only this model name's labels (all versions).
        history : bool, default False
            Every answer given; by default only the latest answer for each row.
        """
        with self.engine.connect() as conn:
            rows = conn.execute(self._query(model, history)).mappings().all()
        return [
            Label(
                model=r["model"],
                version=r["version"],
                row_key=r["row_key"],
                label=r["label"],
                who=r["who"],
                created_at=_utc(r["created_at"]),
                note=r["note"],
                id=int(r["id"]),
            )
            for r in rows
        ]

    def reviewed_keys(self, model: str) -> frozenset[str]:
        """The key texts of every row of ``model`` that has a label (``unsure`` included):
        the rows the review queue does not offer again."""
        t = self.table
        query = sa.select(t.c.row_key).where(t.c.model == check_model_name(model)).distinct()
        with self.engine.connect() as conn:
            return frozenset(conn.execute(query).scalars())

    def frame(self, model: str | None = None, *, history: bool = False) -> pd.DataFrame:
        """:meth:`labels` as a DataFrame (one row per label, plus ``target``)."""
        records = [
            {**lab.to_dict(), "target": lab.target} for lab in self.labels(model, history=history)
        ]
        columns = [*Label.__dataclass_fields__, "target"]
        return pd.DataFrame.from_records(records, columns=columns)

    def counts(self, model: str | None = None) -> dict[str, int]:
        """How many rows carry each label (latest answers)."""
        found = {label: 0 for label in LABELS}
        t = self.table
        query = (
            self._query(model, False)
            .with_only_columns(t.c.label, sa.func.count())
            .group_by(t.c.label)
            .order_by(None)
        )
        with self.engine.connect() as conn:
            for label, count in conn.execute(query):
                found[label] = int(count)
        return found


def _model_and_version(model: str, version: int | None) -> tuple[str, int | None]:
    from adp.models.api import parse_ref

    name, ref_version = parse_ref(model)
    if "@" in str(model):
        if not isinstance(ref_version, int):
            raise ConfigError(
                f"label a model by name or name@<number>, not {model!r}: the version the "
                "analyst was shown is a number"
            )
        if version is not None and version != ref_version:
            raise ConfigError(f"model {model!r} and version={version} disagree: give one")
        version = ref_version
    return name, _version(version)


def _key(key: str | Mapping[str, Any], columns: Sequence[str] | None) -> str:
    if isinstance(key, str):
        return parse_key(key, columns)
    if isinstance(key, Mapping):
        try:
            return key_text(key, columns)
        except DataError as exc:  # as parse_key does for a key given as JSON text
            raise ConfigError(f"row key {dict(key)!r}: {exc}") from None
    raise ConfigError(
        f"a row key is a mapping of key column to value or its JSON text, not {type(key).__name__}"
    )


def default_store() -> LabelStore:
    """A :class:`LabelStore` on the configured database (``adp.feedback.*``)."""
    return LabelStore()


__all__ = [
    "LABELS",
    "TARGETS",
    "Label",
    "LabelStore",
    "check_label",
    "default_store",
    "label_set_sha256",
    "labels_url",
]

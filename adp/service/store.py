"""The service's job records in SQL (SQLite by default, PostgreSQL tested): one row per job
with its owner, state, spec, progress, summary and timings, and its log lines.

States move ``queued -> running -> succeeded | failed | cancelled | interrupted``; a
cancelled, failed or interrupted job may be resumed (back to ``queued``). Every change is
one transaction; :meth:`JobStore.claim` takes the oldest queued job atomically, so two
drivers never run the same job.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from adp.db import engine_for, parse_url, write_transaction
from adp.errors import ConfigError

#: Every state a job can be in.
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
#: States a job never leaves by itself.
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
#: States from which ``resume`` puts a job back in the queue.
RESUMABLE = frozenset({"failed", "cancelled", "interrupted"})

_METADATA = sa.MetaData()
_JOBS = sa.Table(
    "adp_service_jobs",
    _METADATA,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("owner", sa.String(200), nullable=False, index=True),
    sa.Column("roles", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("spec_shown", sa.Text, nullable=False),
    sa.Column("output", sa.Text),
    sa.Column("stage", sa.String(32)),
    sa.Column("done", sa.Integer, nullable=False, default=0),
    sa.Column("total", sa.Integer, nullable=False, default=0),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("summary", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("report", sa.Text),
    sa.Column("cancel_by", sa.String(200)),
    sa.Column("model_sha256", sa.String(64)),
    sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started", sa.DateTime(timezone=True)),
    sa.Column("finished", sa.DateTime(timezone=True)),
)
_LOGS = sa.Table(
    "adp_service_logs",
    _METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("job_id", sa.String(32), nullable=False, index=True),
    sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    sa.Column("line", sa.Text, nullable=False),
)


def job_store_url(options: Any, state_dir: Path) -> str:
    """The job database's URL: ``adp.service.database``, or SQLite in the state directory."""
    return str(options.database or f"sqlite:///{state_dir / 'service.db'}")


def new_job_id() -> str:
    """A new job id: 32 hex digits (safe in paths, URLs and SQL)."""
    return uuid.uuid4().hex


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)  # SQLite gives naive datetimes back


@dataclass(frozen=True)
class JobRecord:
    """One job as the service knows it.

    Attributes
    ----------
    id, name, owner : str
        The job's id, its spec's name, and who submitted it (the token's subject).
    roles : tuple of str
        The submitter's roles when it was submitted (checked again when it starts).
    state : str
        One of :data:`STATES`.
    spec : dict
        The spec as submitted (run by the service; never shown).
    spec_shown : dict
        The spec with secrets masked, for pages and answers.
    stage, done, total
        The running stage and its progress in partitions.
    """

    id: str
    name: str
    owner: str
    roles: tuple[str, ...]
    state: str
    spec: dict[str, Any]
    spec_shown: dict[str, Any]
    output: str | None
    stage: str | None
    done: int
    total: int
    attempt: int
    summary: dict[str, Any] | None
    error: str | None
    report: str | None
    cancel_by: str | None
    created: dt.datetime
    started: dt.datetime | None
    finished: dt.datetime | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (it runs again only when resumed)."""
        return self.state in TERMINAL

    @property
    def seconds(self) -> float | None:
        """Wall-clock seconds from start to end (to now while running)."""
        if self.started is None:
            return None
        end = self.finished or _now()
        return (end - self.started).total_seconds()

    def public(self) -> dict[str, Any]:
        """What the API answers about the job (no unmasked spec)."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "state": self.state,
            "output": self.output,
            "progress": {"stage": self.stage, "done": self.done, "total": self.total},
            "attempt": self.attempt,
            "summary": self.summary,
            "error": self.error,
            "has_report": self.report is not None,
            "spec": self.spec_shown,
            "timings": {
                "created": self.created.isoformat(),
                "started": self.started.isoformat() if self.started else None,
                "finished": self.finished.isoformat() if self.finished else None,
                "seconds": self.seconds,
            },
        }


def _record(row: Any) -> JobRecord:
    def loads(text: str | None) -> Any:
        return None if text is None else json.loads(text)

    return JobRecord(
        id=row["id"],
        name=row["name"],
        owner=row["owner"],
        roles=tuple(loads(row["roles"]) or ()),
        state=row["state"],
        spec=loads(row["spec"]),
        spec_shown=loads(row["spec_shown"]),
        output=row["output"],
        stage=row["stage"],
        done=int(row["done"] or 0),
        total=int(row["total"] or 0),
        attempt=int(row["attempt"] or 1),
        summary=loads(row["summary"]),
        error=row["error"],
        report=row["report"],
        cancel_by=row["cancel_by"],
        created=_utc(row["created"]) or _now(),
        started=_utc(row["started"]),
        finished=_utc(row["finished"]),
    )


class JobStore:
    """The service's jobs and their logs in one SQL database.

    Parameters
    ----------
    url : str
        SQLAlchemy URL (``sqlite:///<state-dir>/service.db`` by default in the service).
    state_dir : path, optional
        Where ADP's own SQLite files may live (as for :func:`adp.db.parse_url`).

    Raises
    ------
    adp.errors.ConfigError
        For an invalid URL.
    """

    def __init__(self, url: str, *, state_dir: Path | None = None) -> None:
        parsed = parse_url(url, what="service database URL", state_dir=state_dir)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = engine_for(
            parsed,
            what="service database URL",
            state_dir=state_dir,
            shared=False,
            sqlite_wal=True,
            sqlite_immediate=False,
        )
        _METADATA.create_all(self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    # -- creating and reading ----------------------------------------------------------
    def create(
        self,
        *,
        name: str,
        owner: str,
        roles: Sequence[str],
        spec: Mapping[str, Any],
        spec_shown: Mapping[str, Any],
        output: str | None,
        log: str | None = None,
        job_id: str | None = None,
    ) -> JobRecord:
        """Add a queued job (with the first line of its log) and return it; ``job_id``
        default a new one (:func:`new_job_id`)."""
        job_id = job_id or new_job_id()
        row: dict[str, Any] = {
            "id": job_id,
            "name": name,
            "owner": owner,
            "roles": json.dumps(list(roles)),
            "state": "queued",
            "spec": json.dumps(spec, default=str),
            "spec_shown": json.dumps(spec_shown, default=str),
            "output": output,
            "done": 0,
            "total": 0,
            "attempt": 1,
            "created": _now(),
        }
        with self._write() as conn:
            conn.execute(_JOBS.insert().values(**row))
            if log is not None:
                conn.execute(_LOGS.insert().values(job_id=job_id, time=row["created"], line=log))
        return _record(
            {**row, "summary": None, "error": None, "report": None, "cancel_by": None}
            | {"stage": None, "started": None, "finished": None}
        )

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id``; :class:`KeyError` when there is none."""
        with self.engine.connect() as conn:
            row = conn.execute(_JOBS.select().where(_JOBS.c.id == job_id)).mappings().first()
        if row is None:
            raise KeyError(job_id)
        return _record(row)

    def jobs(
        self, *, owner: str | None = None, state: str | None = None, limit: int = 500
    ) -> list[JobRecord]:
        """Jobs, newest first; only ``owner``'s when given."""
        query = _JOBS.select().order_by(_JOBS.c.created.desc()).limit(limit)
        if owner is not None:
            query = query.where(_JOBS.c.owner == owner)
        if state is not None:
            query = query.where(_JOBS.c.state == state)
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        query = sa.select(_JOBS.c.state, sa.func.count()).group_by(_JOBS.c.state)
        with self.engine.connect() as conn:
            found = {state: int(n) for state, n in conn.execute(query)}
        return {state: found.get(state, 0) for state in STATES}

    # -- lifecycle ---------------------------------------------------------------------
    def claim(self) -> JobRecord | None:
        """Move the oldest queued job to ``running`` and return it (None when none)."""
        with self._write() as conn:
            row = (
                conn.execute(
                    sa.select(_JOBS.c.id)
                    .where(_JOBS.c.state == "queued")
                    .order_by(_JOBS.c.created)
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            moved = conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == row["id"], _JOBS.c.state == "queued")
                .values(
                    state="running",
                    started=_now(),
                    finished=None,
                    stage=None,
                    done=0,
                    total=0,
                    error=None,
                )
            )
            if moved.rowcount != 1:
                return None
        return self.get(row["id"])

    def progress(self, job_id: str, stage: str, done: int, total: int) -> None:
        """Record the running stage's progress in partitions."""
        with self._write() as conn:
            conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id)
                .values(stage=stage, done=int(done), total=int(total))
            )

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        summary: Mapping[str, Any] | None = None,
        error: str | None = None,
        report: str | None = None,
    ) -> JobRecord:
        """End a running (or queued) job in a terminal ``state``."""
        if state not in TERMINAL:
            raise ConfigError(f"{state!r} is not a terminal job state ({sorted(TERMINAL)})")
        values: dict[str, Any] = {"state": state, "finished": _now(), "error": error}
        if summary is not None:
            values["summary"] = json.dumps(summary, default=str)
        if report is not None:
            values["report"] = report
        with self._write() as conn:
            conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id, _JOBS.c.state.in_(("queued", "running")))
                .values(**values)
            )
        return self.get(job_id)

    def request_cancel(self, job_id: str, by: str) -> JobRecord:
        """Ask a job to stop: a queued job is cancelled at once, a running one is marked
        for its driver (which stops it between two finished tasks)."""
        with self._write() as conn:
            conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id, _JOBS.c.state == "queued")
                .values(state="cancelled", finished=_now(), cancel_by=by)
            )
            conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id, _JOBS.c.state == "running")
                .values(cancel_by=by)
            )
        return self.get(job_id)

    def cancel_requested(self, job_id: str) -> str | None:
        """Who asked to cancel the running job ``job_id``, or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(_JOBS.c.cancel_by).where(_JOBS.c.id == job_id)
            ).scalar_one_or_none()

    def requeue(self, job_id: str) -> JobRecord:
        """Put a failed, cancelled or interrupted job back in the queue (``resume``)."""
        with self._write() as conn:
            moved = conn.execute(
                _JOBS.update()
                .where(_JOBS.c.id == job_id, _JOBS.c.state.in_(tuple(RESUMABLE)))
                .values(
                    state="queued",
                    attempt=_JOBS.c.attempt + 1,
                    cancel_by=None,
                    error=None,
                    finished=None,
                )
            )
        if moved.rowcount != 1:
            state = self.get(job_id).state
            raise ConfigError(
                f"job {job_id} is {state}; only a {', '.join(sorted(RESUMABLE))} job resumes"
            )
        return self.get(job_id)

    def interrupt_running(self, reason: str) -> list[JobRecord]:
        """Mark every ``running`` job ``interrupted`` (a restarted service's first step:
        whatever it was running when it died is not running any more)."""
        with self._write() as conn:
            ids = list(
                conn.execute(sa.select(_JOBS.c.id).where(_JOBS.c.state == "running")).scalars()
            )
            if ids:
                conn.execute(
                    _JOBS.update()
                    .where(_JOBS.c.id.in_(ids), _JOBS.c.state == "running")
                    .values(state="interrupted", finished=_now(), error=reason)
                )
        return [self.get(job_id) for job_id in ids]

    # -- the fitted model of a resumable job ---------------------------------------------
    def remember_model(self, job_id: str, digest: str) -> None:
        """Record the SHA-256 of the model the job's first attempt fitted."""
        with self._write() as conn:
            conn.execute(_JOBS.update().where(_JOBS.c.id == job_id).values(model_sha256=digest))

    def model_digest(self, job_id: str) -> str | None:
        """The SHA-256 recorded by :meth:`remember_model`, or None."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(_JOBS.c.model_sha256).where(_JOBS.c.id == job_id)
            ).scalar_one_or_none()

    # -- logs --------------------------------------------------------------------------
    def log(self, job_id: str, line: str) -> None:
        """Append one line to the job's log."""
        with self._write() as conn:
            conn.execute(_LOGS.insert().values(job_id=job_id, time=_now(), line=line))

    def logs(self, job_id: str) -> list[tuple[dt.datetime, str]]:
        """The job's log lines, oldest first."""
        query = _LOGS.select().where(_LOGS.c.job_id == job_id).order_by(_LOGS.c.id)
        with self.engine.connect() as conn:
            return [(_utc(r["time"]) or _now(), r["line"]) for r in conn.execute(query).mappings()]

    # -- retention (adp.service.retention) ---------------------------------------------
    def expirable(self, before: dt.datetime) -> list[JobRecord]:
        """Succeeded jobs that finished before ``before`` and still name an output or a
        report, oldest first."""
        col = _JOBS.c
        query = (
            _JOBS.select()
            .where(col.state == "succeeded", col.finished < before)
            .where(sa.or_(col.output.is_not(None), col.report.is_not(None)))
            .order_by(col.finished)
        )
        with self.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def expire(self, job_id: str, line: str, *, output: bool = True, report: bool = True) -> None:
        """Forget a job's ``output`` and/or ``report`` (retention deleted them, or they are
        gone) and add ``line`` to its log."""
        values = {**({"output": None} if output else {}), **({"report": None} if report else {})}
        with self._write() as conn:
            if values:
                conn.execute(_JOBS.update().where(_JOBS.c.id == job_id).values(**values))
            conn.execute(_LOGS.insert().values(job_id=job_id, time=_now(), line=line))


__all__ = [
    "RESUMABLE",
    "STATES",
    "TERMINAL",
    "JobRecord",
    "JobStore",
    "job_store_url",
    "new_job_id",
]

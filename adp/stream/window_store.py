"""Where per-key windows persist: a Redis hash or a SQL table (:mod:`adp.stream.windows`).

A store maps a window key (a JSON array of the event's ``by`` values) to its state, and
saves a batch's states in one atomic step (one ``HSET``; one transaction). The entry
:data:`META` records the window's shape, so a restart with another window refuses the old
state rather than misreading it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from adp.errors import ConfigError, SourceError

__all__ = ["META", "RedisWindowStore", "SqlWindowStore", "WindowStore"]

#: The store's entry that records which window made the state.
META = "__window__"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WindowStore(Protocol):
    """Where windows persist: key -> state, saved atomically a batch at a time."""

    name: str

    def load(self) -> dict[str, bytes]:
        """Every saved state, by key (and :data:`_META`)."""
        ...

    def save(self, states: Mapping[str, bytes]) -> None:
        """Write ``states`` (key -> state) in one atomic step."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class RedisWindowStore:
    """Window states in the Redis hash ``key`` (one field per window key, one ``HSET``
    per batch: atomic)."""

    def __init__(self, url: str, key: str) -> None:
        import redis

        from adp.redact import redact_url

        self.key, self.name = key, f"redis:{redact_url(url)}#{key}"
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=60.0)

    def _failed(self, doing: str, exc: Exception) -> SourceError:
        return SourceError(f"cannot {doing} the window state at {self.name}: {exc}")

    def load(self) -> dict[str, bytes]:
        """``HGETALL``."""
        import redis

        try:
            raw = self._redis.hgetall(self.key)
        except redis.RedisError as exc:
            raise self._failed("read", exc) from exc
        return {_text(k): v if isinstance(v, bytes) else v.encode() for k, v in raw.items()}

    def save(self, states: Mapping[str, bytes]) -> None:
        """One ``HSET`` with every state."""
        import redis

        if not states:
            return
        try:
            self._redis.hset(self.key, mapping=dict(states))  # type: ignore[arg-type]
        except redis.RedisError as exc:
            raise self._failed("save", exc) from exc

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()


class SqlWindowStore:
    """Window states in the table ``table`` (PostgreSQL or SQLite), one row per window
    key under ``stream``; a batch's states are upserted in one transaction."""

    def __init__(self, url: str, table: str, stream: str) -> None:
        import sqlalchemy as sa

        from adp.db import check_identifier, engine_for, safe_url

        self.stream, self._url = stream, url
        self.name = f"sql:{safe_url(url)}#{table}"
        self.engine = engine_for(url, what="window.state.url")
        if self.engine.dialect.name not in ("postgresql", "sqlite"):
            raise ConfigError(
                f"window.state.url: window state is kept in PostgreSQL or SQLite, not "
                f"{self.engine.dialect.name} ({safe_url(url)})"
            )
        self.table = sa.Table(
            check_identifier(table, "window.state.table"),
            sa.MetaData(),
            sa.Column("stream", sa.Text(), primary_key=True),
            sa.Column("window_key", sa.Text(), primary_key=True),
            sa.Column("state", sa.Text(), nullable=False),
        )
        self._created = False

    def _connection_error(self, exc: Exception) -> SourceError:
        from adp.db import connect_error

        return connect_error(self._url, exc)

    def _create(self) -> None:
        import sqlalchemy as sa

        from adp.db import write_transaction

        if self._created:
            return
        try:
            with write_transaction(self.engine) as conn:
                self.table.create(conn, checkfirst=True)
        except sa.exc.OperationalError as exc:
            raise self._connection_error(exc) from exc
        self._created = True

    def load(self) -> dict[str, bytes]:
        """The rows of this stream."""
        import sqlalchemy as sa

        self._create()
        query = sa.select(self.table.c.window_key, self.table.c.state).where(
            self.table.c.stream == self.stream
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.OperationalError as exc:
            raise self._connection_error(exc) from exc
        return {k: s.encode() for k, s in rows}

    def save(self, states: Mapping[str, bytes]) -> None:
        """Upsert the states in one transaction."""
        import sqlalchemy as sa

        from adp.db import write_transaction

        if not states:
            return
        self._create()
        statement: Any
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            statement = postgresql.insert(self.table)
        else:
            from sqlalchemy.dialects import sqlite

            statement = sqlite.insert(self.table)
        statement = statement.on_conflict_do_update(
            index_elements=["stream", "window_key"], set_={"state": statement.excluded.state}
        )
        rows = [
            {"stream": self.stream, "window_key": k, "state": v.decode()} for k, v in states.items()
        ]
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(statement, rows)
        except sa.exc.OperationalError as exc:
            raise self._connection_error(exc) from exc

    def close(self) -> None:
        """Nothing to release: the engine is the process's shared one for the URL."""

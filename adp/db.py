"""Shared SQL plumbing: checked database URLs, one engine per URL per process, validated
identifiers, and SQLite connections with transactional DDL."""

from __future__ import annotations

import re
import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from adp.errors import ConfigError, SourceError
from adp.paths import check_allowed, check_host

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_ENGINES: dict[str, Engine] = {}
_LOCK = threading.Lock()


def is_sql_url(uri: str) -> bool:
    """Whether ``uri`` is a SQLAlchemy database URL (``sqlite:///...``, ``postgresql+psycopg://...``)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    dialect = scheme.split("+", 1)[0]
    return dialect in {"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"}


def parse_url(url: str) -> URL:
    """Parse and check a database URL: the host is not link-local, a SQLite file is inside
    the allowed roots.

    Raises
    ------
    adp.errors.ConfigError
        When ``url`` does not parse.
    adp.errors.AccessDeniedError
        For a link-local host or a SQLite file outside ``adp.io.allowed-roots``.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigError(f"{url!r} is not a database URL: {exc}") from None
    if parsed.host:
        check_host(parsed.host, field="database URL host", shown=safe_url(parsed))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        check_allowed(str(parsed.database))
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


def _sqlite_transactional_ddl(engine: Engine) -> None:
    # pysqlite does not BEGIN before DDL; SQLAlchemy's documented recipe makes DROP,
    # CREATE and INSERT of one commit a single transaction.
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def engine_for(url: str) -> Engine:
    """One engine per URL in this process (workers reuse theirs across tasks)."""
    with _LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            parsed = sa.make_url(url)
            if parsed.get_backend_name() == "sqlite":
                engine = sa.create_engine(parsed, connect_args={"timeout": 120})
                _sqlite_transactional_ddl(engine)
            else:
                engine = sa.create_engine(parsed, pool_pre_ping=True)
            _ENGINES[url] = engine
        return engine


def connect_error(url: str | URL, exc: BaseException) -> SourceError:
    """A :class:`SourceError` for a database that cannot be reached, password hidden."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return SourceError(f"cannot connect to the database {safe_url(url)}: {reason}")


def check_identifier(name: str, what: str = "table") -> str:
    """Refuse ``name`` unless it is a plain SQL identifier (letters, digits, ``_``)."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ConfigError(
            f"{what} name {name!r} is not a plain SQL identifier (letters, digits and _, "
            "not starting with a digit, at most 63 characters)"
        )
    return name

"""The one SQL base: checked database URLs, one identifier rule, and the engine factory that
io (sources and table sinks), models (the registry's metadata) and observe (the audit log)
all use.

- :func:`parse_url` checks every database URL before anything connects: its host is not a
  link-local or instance-metadata address, and a SQLite file is inside
  ``adp.io.allowed-roots`` (ADP's own databases may also live in its state directory).
- :func:`check_identifier` is the only rule for SQL names ADP creates or interpolates.
- :func:`engine_for` makes every engine: the checks above, ``pool_pre_ping`` on server
  databases, and on SQLite a busy timeout and transactional DDL (SQLAlchemy's documented
  ``BEGIN IMMEDIATE`` recipe), with WAL journaling on request.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from adp.errors import ConfigError, SourceError
from adp.paths import check_allowed, check_host

IDENTIFIER_MAX_LENGTH = 42
"""The longest SQL identifier ADP accepts; see :func:`check_identifier` for why 42."""

_IDENTIFIER = re.compile(rf"[A-Za-z_][A-Za-z0-9_]{{0,{IDENTIFIER_MAX_LENGTH - 1}}}")
_WRITE = "adp_write"
_ENGINES: dict[tuple[Any, ...], Engine] = {}
_LOCK = threading.Lock()


def is_sql_url(uri: str) -> bool:
    """Whether ``uri`` is a SQLAlchemy database URL (``sqlite:///...``, ``postgresql+psycopg://...``)."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    dialect = scheme.split("+", 1)[0]
    return dialect in {"sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle"}


def check_identifier(name: str, what: str = "table name") -> str:
    """Return ``name`` if it is a plain SQL identifier, else refuse it.

    The one rule for every SQL name ADP creates or interpolates (output tables and their
    columns, the registry's table prefix and schema, the audit table): an ASCII letter or
    ``_``, then letters, digits or ``_``, at most :data:`IDENTIFIER_MAX_LENGTH` (42)
    characters. Such a name needs no quoting and cannot inject SQL.

    Why 42: PostgreSQL keeps 63 bytes of a name and silently truncates longer ones, so two
    derived names could collide or DDL could name another object. ADP and the database
    derive names by appending to a checked one, and the longest suffix is 21 characters:
    PostgreSQL's own sequence for the registry's ``id`` column,
    ``<prefix>model_versions_id_seq``. 63 - 21 = 42 keeps every derived name whole: the
    registry's ``<prefix>model_name_version`` constraint (+18), the audit log's
    ``<table>_append_only`` function and ``<table>_no_truncate`` trigger (+12),
    SQLAlchemy's ``ix_<table>_job_id`` index (+10) and a table sink's ``ux_<table>_key``
    unique index (+7). ADP's staging tables (``_adp_stage_<12 hex>``) pass the rule too.

    Parameters
    ----------
    name : str
        The identifier.
    what : str, default "table name"
        How to name it in the error (``"column name"``, ``"table prefix"``, ...).

    Returns
    -------
    str
        ``name`` unchanged.

    Raises
    ------
    adp.errors.ConfigError
        Naming ``what`` and the value.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigError(
            f"{what} {name!r} is not a plain SQL identifier: use letters, digits and _, "
            f"not starting with a digit, at most {IDENTIFIER_MAX_LENGTH} characters"
        )
    return name


def parse_url(
    url: str | URL,
    *,
    what: str = "database URL",
    state_dir: str | os.PathLike[str] | None = None,
) -> URL:
    """Parse and check a database URL: the host is not link-local, a SQLite file is inside
    the allowed roots.

    Parameters
    ----------
    url : str or sqlalchemy.engine.URL
        The SQLAlchemy URL.
    what : str, default "database URL"
        How to name the setting in errors (``"audit database URL"``).
    state_dir : path, optional
        ADP's state directory, for its own databases (audit log, model registry): a SQLite
        file inside it is allowed even when ``adp.io.allowed-roots`` does not list it.

    Returns
    -------
    sqlalchemy.engine.URL

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
        raise ConfigError(
            f"invalid {what} {str(url)!r}: {exc}; use a SQLAlchemy URL such as "
            "sqlite:///path/to/file.db or postgresql+psycopg://user@host:5432/db"
        ) from None
    if parsed.host:
        check_host(parsed.host, field=f"{what} host", shown=safe_url(parsed))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        check_allowed(str(parsed.database), also=() if state_dir is None else (state_dir,))
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable URL>"


def _sqlite_recipe(engine: Engine, wal: bool) -> None:
    # pysqlite does not BEGIN before DDL; SQLAlchemy's documented recipe makes DROP,
    # CREATE and INSERT of one commit a single transaction. BEGIN IMMEDIATE takes the
    # write lock up front, so two writers queue on the busy timeout instead of one failing
    # on a lock upgrade; connections not marked for writing begin deferred.
    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        if wal:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def engine_for(
    url: str | URL,
    *,
    what: str = "database URL",
    state_dir: str | os.PathLike[str] | None = None,
    sqlite_timeout: float = 120.0,
    sqlite_wal: bool = False,
    sqlite_immediate: bool = True,
    shared: bool = True,
) -> Engine:
    """The engine for ``url``, after :func:`parse_url`'s checks (run on every call).

    Parameters
    ----------
    url : str or sqlalchemy.engine.URL
        The SQLAlchemy URL.
    what, state_dir
        As for :func:`parse_url`.
    sqlite_timeout : float, default 120
        SQLite: seconds a connection waits for another's lock before failing.
    sqlite_wal : bool, default False
        SQLite: switch the file to the WAL journal (readers do not block the writer).
    sqlite_immediate : bool, default True
        SQLite: begin every transaction with ``BEGIN IMMEDIATE``. With ``False`` only
        transactions opened through :func:`write_transaction` do; others begin deferred, so
        readers do not queue behind writers.
    shared : bool, default True
        Return the one engine this process holds for this URL and these options (workers
        reuse theirs across tasks). ``False`` makes a private engine for an owner that
        disposes of it (the audit log, the registry's catalog).

    Returns
    -------
    sqlalchemy.engine.Engine
        Server databases get ``pool_pre_ping=True``.

    Raises
    ------
    adp.errors.ConfigError, adp.errors.AccessDeniedError
        As for :func:`parse_url`.
    ImportError, sqlalchemy.exc.SQLAlchemyError
        When the dialect's driver is missing or the URL's options are not understood.
    """
    parsed = parse_url(url, what=what, state_dir=state_dir)
    sqlite = parsed.get_backend_name() == "sqlite"
    key = (
        parsed.render_as_string(hide_password=False),
        sqlite_timeout,
        sqlite_wal,
        sqlite_immediate,
    )
    if not shared:
        return _create(parsed, sqlite, sqlite_timeout, sqlite_wal, sqlite_immediate)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create(parsed, sqlite, sqlite_timeout, sqlite_wal, sqlite_immediate)
            _ENGINES[key] = engine
        return engine


def driver_engine(url: str, field: str) -> Engine:
    """:func:`engine_for` ``url``, where a driver that is not installed, or a URL SQLAlchemy
    cannot use, is a :class:`~adp.errors.ConfigError` naming ``field`` and the driver.

    Raises
    ------
    adp.errors.ConfigError
        As for :func:`parse_url`, and for a driver SQLAlchemy cannot load.
    """
    try:
        return engine_for(url, what=field)
    except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ImportError) as exc:
        driver = url.split("://", 1)[0]
        raise ConfigError(
            f"{field} {safe_url(url)} names database driver {driver!r}, which SQLAlchemy "
            f"cannot load ({type(exc).__name__}): install its package or fix the URL, such "
            "as postgresql+psycopg://host/db or sqlite:///file.db"
        ) from None


def server_connect_args(url: URL) -> dict[str, Any]:
    """Connect (and, where the driver has one, read) timeouts for a server database, from
    dask config ``adp.io.connect-timeout`` / ``adp.io.read-timeout``, unless the URL's
    query already sets them: a dead or hung server fails in seconds, not minutes."""
    from adp.config import settings

    io = settings().io
    connect = max(2, math.ceil(io.connect_timeout))  # libpq's minimum is 2 s
    backend, driver = url.get_backend_name(), url.get_driver_name()
    args: dict[str, Any] = {}
    if backend == "postgresql":
        args["connect_timeout"] = connect
    elif backend in ("mysql", "mariadb") and driver in ("pymysql", "mysqldb"):
        args.update(connect_timeout=connect, read_timeout=math.ceil(io.read_timeout))
    return {k: v for k, v in args.items() if k not in url.query}


def _create(parsed: URL, sqlite: bool, timeout: float, wal: bool, immediate: bool) -> Engine:
    if not sqlite:
        return sa.create_engine(  # hide_parameters: no data value in any error message
            parsed,
            pool_pre_ping=True,
            connect_args=server_connect_args(parsed),
            hide_parameters=True,
        )
    engine = sa.create_engine(
        parsed,
        connect_args={"timeout": timeout},
        execution_options={_WRITE: immediate},
        hide_parameters=True,
    )
    _sqlite_recipe(engine, wal)
    return engine


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes SQLite's write lock at its start (``BEGIN IMMEDIATE``),
    whatever the engine's default; on other databases a plain transaction.

    Yields
    ------
    sqlalchemy.engine.Connection
        Committed when the block ends, rolled back when it raises.
    """
    with engine.connect() as raw:
        conn = raw.execution_options(**{_WRITE: True})
        with conn.begin():
            yield conn


def connect_error(url: str | URL, exc: BaseException) -> SourceError:
    """A :class:`SourceError` for a database that cannot be reached, password hidden."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return SourceError(f"cannot connect to the database {safe_url(url)}: {reason}")


__all__ = [
    "IDENTIFIER_MAX_LENGTH",
    "check_identifier",
    "connect_error",
    "driver_engine",
    "engine_for",
    "is_sql_url",
    "parse_url",
    "safe_url",
    "server_connect_args",
    "write_transaction",
]

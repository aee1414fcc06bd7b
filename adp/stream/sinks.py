"""Where a stream's results go, idempotently by message id.

A sink's :meth:`~Sink.write` returns once the batch is committed; the runner acknowledges
the batch's messages only after every sink returned. A message delivered again (its
consumer died after the commit, before the acknowledgement) is written again, and the sink
keeps the first result:

- :class:`SqlSink`: a table (created when missing) whose primary key is ``message_id``;
  rows are inserted with ``ON CONFLICT (message_id) DO NOTHING`` in one transaction per
  batch (PostgreSQL and SQLite). On PostgreSQL the batch is first ``COPY``-ed into a
  temporary table of the session and inserted from there in one statement: a row-by-row
  ``INSERT`` (even batched into multi-row ``VALUES``) made the sink the stream's
  bottleneck at about 15,000 rows/s.
- :class:`StreamSink`: an output stream on the source's broker, published idempotently
  by message id (:meth:`adp.stream.brokers.Broker.publish`).

Result rows carry ``message_id``, the key columns, ``score`` (float64), ``is_anomaly``,
the ``threshold`` the row was flagged against (null while an adaptive threshold warms
up), the ``model`` (``name@version``), the broker's ``event_time`` and ``scored_at`` (UTC).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd
import sqlalchemy as sa

from adp.db import check_identifier, connect_error, driver_engine, safe_url, write_transaction
from adp.errors import ConfigError, SourceError, bounded
from adp.stream.brokers.protocol import Broker
from adp.stream.result_text import iso_text, native, result_json

__all__ = ["RESULT_COLUMNS", "Sink", "SqlSink", "StreamSink", "result_json", "result_records"]

#: The columns every result has besides the key columns.
RESULT_COLUMNS = ("score", "is_anomaly", "threshold", "model", "event_time", "scored_at")
_DIALECTS = ("postgresql", "sqlite")


class Sink(Protocol):
    """A destination for results that is idempotent by ``message_id``."""

    name: str

    def write(self, results: pd.DataFrame) -> None:
        """Commit ``results`` (one row per message id); on return they are durable."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def result_records(results: pd.DataFrame) -> list[dict[str, Any]]:
    """The result rows as plain Python dicts (``message_id`` first)."""
    columns = _result_columns(results)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _result_columns(results: pd.DataFrame) -> dict[str, list[Any]]:
    """The result columns as lists of Python values (``message_id`` first; NaN, NaT and
    non-finite thresholds as None)."""
    columns: dict[str, list[Any]] = {"message_id": [str(i) for i in results.index.tolist()]}
    for name in results.columns:
        column = results[name]
        if name == "is_anomaly":
            columns[name] = column.to_numpy(dtype=bool).tolist()
        elif name == "score":
            columns[name] = column.to_numpy(dtype=np.float64).tolist()
        elif name == "threshold":  # none yet (an adaptive threshold warming up): null
            values = column.to_numpy(dtype=np.float64)
            listed: list[Any] = values.tolist()
            if not np.isfinite(values).all():
                listed = [v if math.isfinite(v) else None for v in listed]
            columns[name] = listed
        else:
            columns[name] = native(column)
    return columns


def _sql_type(dtype: Any) -> sa.types.TypeEngine[Any]:
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Double()
    return sa.Text()


class SqlSink:
    """Results in the table ``table`` at ``url``, one row per message id.

    Parameters
    ----------
    url : str
        A PostgreSQL or SQLite SQLAlchemy URL (checked by :func:`adp.db.driver_engine`).
    table : str
        A plain SQL identifier; the table is created at the first write when missing (key
        columns typed after that batch), and must otherwise have ``message_id`` as its
        primary key and the result columns.
    key : sequence of str
        The key columns.
    url_field : str, default "sinks.sql.url"
        What errors about ``url`` call it (a command-line option, for a caller that is not
        a stream spec).
    """

    def __init__(
        self, url: str, table: str, key: Sequence[str] = (), *, url_field: str = "sinks.sql.url"
    ) -> None:
        self.table_name = check_identifier(table, "sinks.sql.table")
        self.key = [check_identifier(k, "key column") for k in key]
        self.name = f"sql:{safe_url(url)}#{table}"
        self._url = url
        self.engine = driver_engine(url, url_field)
        dialect = self.engine.dialect.name
        if dialect not in _DIALECTS:
            raise ConfigError(
                f"{url_field}: the stream's SQL sink writes to PostgreSQL or SQLite, not "
                f"{dialect} ({safe_url(url)})"
            )
        self._table: sa.Table | None = None

    def __repr__(self) -> str:
        return f"SqlSink({self.name!r})"

    def _define(self, results: pd.DataFrame) -> sa.Table:
        metadata = sa.MetaData()
        columns: list[sa.Column[Any]] = [sa.Column("message_id", sa.Text(), primary_key=True)]
        columns += [sa.Column(k, _sql_type(results[k].dtype)) for k in self.key]
        columns += [
            sa.Column("score", sa.Double(), nullable=False),
            sa.Column("is_anomaly", sa.Boolean(), nullable=False),
            sa.Column("threshold", sa.Double()),
            sa.Column("model", sa.Text()),
            sa.Column("event_time", sa.DateTime(timezone=True)),
            sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        ]
        return sa.Table(self.table_name, metadata, *columns)

    def _prepare(self, results: pd.DataFrame) -> sa.Table:
        table = self._define(results)
        try:
            with write_transaction(self.engine) as conn:
                table.create(conn, checkfirst=True)
                found = sa.inspect(conn).get_columns(self.table_name)
                primary = sa.inspect(conn).get_pk_constraint(self.table_name)
        except sa.exc.OperationalError as exc:
            raise connect_error(self._url, exc) from exc
        names = {c["name"] for c in found}
        lacking = [c.name for c in table.columns if c.name not in names]
        if lacking or primary.get("constrained_columns") != ["message_id"]:
            raise ConfigError(
                f"table {self.table_name!r} at {safe_url(self._url)} is not a stream result "
                f"table (lacking {bounded(lacking)}, or message_id is not its primary key): "
                "choose another sinks.sql.table"
            )
        return table

    def write(self, results: pd.DataFrame) -> None:
        """Insert the rows whose message id is not in the table yet, in one transaction."""
        if not len(results):
            return
        if self._table is None:
            self._table = self._prepare(results)
        try:
            with write_transaction(self.engine) as conn:
                if self.engine.dialect.name == "postgresql":
                    _copy_then_insert(conn, self._table, results)
                else:
                    from sqlalchemy.dialects import sqlite

                    statement = sqlite.insert(self._table).on_conflict_do_nothing(
                        index_elements=["message_id"]
                    )
                    conn.execute(statement, result_records(results))
        except sa.exc.OperationalError as exc:
            raise connect_error(self._url, exc) from exc
        except sa.exc.DBAPIError as exc:
            raise SourceError(
                f"cannot write stream results to table {self.table_name!r} at "
                f"{safe_url(self._url)}: {str(exc.orig).strip().splitlines()[0]}"
            ) from exc

    def close(self) -> None:
        """Nothing to release: the engine is the process's shared one for the URL."""


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def _copy_value(value: Any) -> str:
    """One Python value in ``COPY``'s text format."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return str(value).translate(_COPY_ESCAPES)


def _copy_column(name: str, column: pd.Series) -> list[str]:
    """A result column in ``COPY``'s text format, column-wise where the type allows; the
    values :func:`result_records` gives the other dialects (a missing key value or
    threshold is null, a NaN score stays NaN)."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) and not column.hasnans:
        return np.where(column.to_numpy(dtype=bool), "t", "f").tolist()
    if isinstance(dtype, pd.DatetimeTZDtype):
        return [_NULL if v is None else v for v in iso_text(column)]
    if pd.api.types.is_float_dtype(dtype):
        floats: list[float] = column.to_numpy(dtype=np.float64, na_value=np.nan).tolist()
        if np.isfinite(floats).all():
            return list(map(float.__repr__, floats))
        if name == "threshold":  # none yet (an adaptive threshold warming up): null
            return [repr(v) if math.isfinite(v) else _NULL for v in floats]
        if name == "score":
            return list(map(_copy_value, floats))
        return [_NULL if math.isnan(v) else _copy_value(v) for v in floats]
    values = native(column)
    if set(map(type, values)) <= {str}:
        joined = "".join(values)
        if not any(c in joined for c in "\\\t\n\r"):
            return values  # plain text that needs no escape
    return list(map(_copy_value, values))


def _copy_text(results: pd.DataFrame) -> str:
    """The result rows in ``COPY``'s text format: tab-separated, null as ``\\N``,
    ``message_id`` first."""
    ids = pd.Series([str(i) for i in results.index.tolist()], dtype=object)
    texts = [_copy_column("message_id", ids)]
    texts += [_copy_column(str(name), results[name]) for name in results.columns]
    return "".join("\t".join(row) + "\n" for row in zip(*texts, strict=True))


def _copy_then_insert(conn: sa.Connection, table: sa.Table, results: pd.DataFrame) -> None:
    """PostgreSQL, in ``conn``'s transaction: ``COPY`` the rows into the session's
    temporary twin of ``table`` (emptied at each commit), then insert those whose
    ``message_id`` is new."""
    from psycopg import sql

    names = sql.SQL(", ").join(sql.Identifier(name) for name in ["message_id", *results.columns])
    target = sql.Identifier(table.name)
    digest = hashlib.sha256(table.name.encode()).hexdigest()[:16]
    stage = sql.Identifier(f"adp_stage_{digest}")  # temporary: one per session and table
    driver: Any = conn.connection.driver_connection
    with driver.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            ).format(stage, target)
        )
        with cursor.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, names)) as copy:
            copy.write(_copy_text(results))
        cursor.execute(
            sql.SQL(
                "INSERT INTO {target} ({names}) SELECT {names} FROM {stage} "
                "ON CONFLICT (message_id) DO NOTHING"
            ).format(target=target, names=names, stage=stage)
        )


class StreamSink:
    """Results published to ``stream`` on ``broker`` as JSON, one message per row.

    Parameters
    ----------
    broker : Broker
        The source's broker.
    stream : str
        The output stream (Redis key, NATS subject, Kafka topic).
    only_anomalies : bool
        Publish flagged rows only.
    maxlen : int, optional
        Redis: trim the output stream to about this many entries.
    """

    def __init__(
        self,
        broker: Broker,
        stream: str,
        *,
        only_anomalies: bool = False,
        maxlen: int | None = None,
    ) -> None:
        self.broker, self.stream = broker, stream
        self.only_anomalies, self.maxlen = only_anomalies, maxlen
        self.name = f"stream:{stream}"

    def __repr__(self) -> str:
        return f"StreamSink({self.stream!r}, only_anomalies={self.only_anomalies})"

    def write(self, results: pd.DataFrame) -> None:
        """Publish the rows (the flagged ones with ``only_anomalies``)."""
        if self.only_anomalies:
            results = results[results["is_anomaly"].to_numpy(dtype=bool)]
        if not len(results):
            return
        self.broker.publish(self.stream, result_json(results), maxlen=self.maxlen)

    def close(self) -> None:
        """Nothing to release: the broker is the runner's."""

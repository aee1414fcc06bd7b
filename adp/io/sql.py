"""SQL sources and sinks through SQLAlchemy 2: a table or a selectable read in parallel,
one bounded ``WHERE`` range of an integer or datetime column per partition, on the workers.

Identifiers are never pasted into SQL: a table and its columns must be *reflected* from the
database, queries are SQLAlchemy selectables, and values travel as bound parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask.dataframe as dd
import numpy as np
import pandas as pd
import sqlalchemy as sa

from adp.db import connect_error, engine_for, parse_url, safe_url
from adp.errors import ConfigError, DataError, SourceError
from adp.io.sql_write import write_table

__all__ = ["read_sql", "write_table"]

ROWS_PER_PARTITION = 250_000
_OPS = {
    "==": "__eq__",
    "=": "__eq__",
    "!=": "__ne__",
    "<": "__lt__",
    "<=": "__le__",
    ">": "__gt__",
    ">=": "__ge__",
}


def _reflect_table(engine: sa.Engine, url: str, table: str, schema: str | None) -> sa.Table:
    try:
        names = sa.inspect(engine).get_table_names(schema=schema)
        names += sa.inspect(engine).get_view_names(schema=schema)
    except sa.exc.OperationalError as exc:
        raise connect_error(url, exc) from None
    if table not in names:
        shown = sorted(names)[:20]
        raise SourceError(
            f"table {table!r} is not in the database {safe_url(url)}"
            f"{f' (schema {schema!r})' if schema else ''}; its tables are {shown}"
        )
    return sa.Table(table, sa.MetaData(), autoload_with=engine, schema=schema)


def _column(source: Any, name: str, where: str) -> sa.ColumnElement[Any]:
    try:
        return source.c[name]
    except KeyError:
        raise DataError(
            f"column {name!r} is not in {where}; its columns are {list(source.c.keys())}"
        ) from None


def _where_clause(source: Any, filters: Sequence[Any], where: str) -> sa.ColumnElement[bool]:
    disjunction = (
        filters
        if filters
        and isinstance(filters[0], list | tuple)
        and isinstance(filters[0][0], list | tuple)
        else [filters]
    )
    clauses = []
    for conjunction in disjunction:
        terms = []
        for predicate in conjunction:
            if len(predicate) != 3:
                raise ConfigError(f"filter {predicate!r} is not [column, op, value]")
            name, op, value = predicate
            column = _column(source, name, where)
            if op == "in":
                terms.append(column.in_(list(value)))
            elif op == "not in":
                terms.append(column.not_in(list(value)))
            elif op in _OPS:
                terms.append(getattr(column, _OPS[op])(value))
            else:
                raise ConfigError(f"filter operator {op!r} is not one of {[*_OPS, 'in']}")
        clauses.append(sa.and_(*terms))
    return sa.or_(*clauses)


def _dtype_for(column: Any) -> Any:
    kind = column.type
    nullable = getattr(column, "nullable", True) is not False
    python = _python_type(column)
    if python is None:
        return None
    if python is bool:
        return object if nullable else bool
    if python is int:
        return np.float64 if nullable else np.int64
    if python is float or python.__name__ == "Decimal":
        return np.float64
    if python.__name__ == "datetime":
        return "datetime64[ns, UTC]" if getattr(kind, "timezone", False) else "datetime64[ns]"
    if python is str:
        return pd.StringDtype(na_value=np.nan)
    return None


def _coerce(frame: pd.DataFrame, meta: pd.DataFrame, where: str) -> pd.DataFrame:
    for name, dtype in meta.dtypes.items():
        if name not in frame.columns or frame[name].dtype == dtype:
            continue
        try:
            frame[name] = frame[name].astype(dtype)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{where}: column {name!r} cannot be read as {dtype} (its declared type): {exc}"
            ) from None
    if frame.index.dtype != meta.index.dtype:
        frame.index = frame.index.astype(meta.index.dtype)
    return frame


def _read_range(
    bounds: tuple[Any, Any, bool, int],
    url: str,
    source: Any,
    index_col: str,
    meta: pd.DataFrame,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    low, high, closed, number = bounds
    names = list(meta.columns) if columns is None else list(columns)
    index = source.c[index_col]
    upper = index <= high if closed else index < high
    query = (
        sa.select(index, *[source.c[n] for n in names if n != index_col])
        .where(index >= low, upper)
        .order_by(index)
    )
    where = f"partition {number} ({index_col} from {low} to {high}) of {safe_url(url)}"
    try:
        with engine_for(url).connect() as conn:
            frame = pd.read_sql(query, conn, index_col=index_col)
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(f"cannot read {where}: {str(getattr(exc, 'orig', exc))}") from None
    return _coerce(frame, meta[names], where)


def _bounds(low: Any, high: Any, n: int, datetime: bool) -> tuple[list[Any], list[Any]]:
    if datetime:
        lo, hi = pd.Timestamp(low), pd.Timestamp(high)
        span = int(hi.value - lo.value)
        n = max(1, min(n, span + 1))
        cuts = [lo + pd.Timedelta(int(x), "ns") for x in np.linspace(0, span, n + 1)]
        cuts[-1] = hi
        edges = [c.to_pydatetime() for c in cuts]
    else:
        lo_i, hi_i = int(low), int(high)
        n = max(1, min(n, hi_i - lo_i + 1))
        edges = [int(x) for x in np.linspace(lo_i, hi_i + 1, n + 1).round()]
        edges[-1] = hi_i
    edges = sorted(set(edges))
    if len(edges) == 1:
        edges = [edges[0], edges[0]]
    return edges, edges


def read_sql(
    url: str,
    table: str | None = None,
    *,
    query: sa.Selectable | None = None,
    index_col: str | None = None,
    npartitions: int | None = None,
    columns: Sequence[str] | None = None,
    filters: Sequence[Any] | None = None,
    schema: str | None = None,
    rows_per_partition: int = ROWS_PER_PARTITION,
) -> dd.DataFrame:
    """Read a table or a SQLAlchemy selectable lazily, partitioned on ``index_col``.

    Parameters
    ----------
    url : str
        A SQLAlchemy database URL, such as ``"sqlite:///data/metrics.db"`` or
        ``"postgresql+psycopg://user@host:5432/db"``; every worker connects with it.
    table : str, optional
        A table (or view) name; it must exist (it is reflected, never pasted into SQL).
    query : sqlalchemy.Selectable, optional
        A selectable such as ``sa.select(t.c.id, t.c.value).where(t.c.site == "a")``,
        instead of ``table``. Strings are refused: build queries with SQLAlchemy.
    index_col : str, optional
        An integer or datetime column to partition on, which becomes the index. Default:
        the table's single-column integer primary key.
    npartitions : int, optional
        Partitions, each one ``WHERE index_col >= low AND index_col < high`` range read on a
        worker. Default: one per ``rows_per_partition`` rows.
    columns : sequence of str, optional
        Read only these columns.
    filters : sequence, optional
        Row filters as in Parquet: ``[(column, op, value), ...]`` (AND), or a list of such
        lists (OR); values are bound parameters. With ``table`` only.
    schema : str, optional
        The database schema of ``table``.
    rows_per_partition : int
        Used when ``npartitions`` is not given.

    Returns
    -------
    dask.dataframe.DataFrame
        Indexed by ``index_col``, with known divisions; nothing read but the column types,
        the bounds and the row count.

    Raises
    ------
    adp.errors.SourceError
        An unknown table, or an unreachable database (password hidden).
    adp.errors.DataError
        An unknown column, no usable index column, NULLs in it, or no rows.
    adp.errors.ConfigError
        A string query, or both or neither of ``table`` and ``query``.
    """
    parse_url(url)
    if (table is None) == (query is None):
        raise ConfigError("give exactly one of table= or query= to read from a database")
    if isinstance(query, str):
        raise ConfigError(
            "query= must be a SQLAlchemy selectable (sa.select(...)), not a string: ADP "
            "does not run SQL text; name a table with table=, columns= and filters= instead"
        )
    if npartitions is not None and int(npartitions) < 1:
        raise ConfigError(f"npartitions must be at least 1, got {npartitions}")
    engine = engine_for(url)
    if table is not None:
        source: Any = _reflect_table(engine, url, table, schema)
        where = f"table {table!r}"
        if filters:
            source = sa.select(source).where(_where_clause(source, filters, where)).subquery()
    else:
        if filters:
            raise ConfigError("filters= applies to table=; put the condition in the query")
        if not isinstance(query, sa.Select | sa.TableClause | sa.Subquery):
            raise ConfigError(f"query= must be a SQLAlchemy select, got {type(query).__name__}")
        source = query.subquery() if isinstance(query, sa.Select) else query
        where = "the query"
    index_col = index_col or _default_index(source, where)
    index = _column(source, index_col, where)
    names = [c for c in (columns or source.c.keys()) if c != index_col]
    for name in names:
        _column(source, name, where)
    datetime = _check_index_type(index, index_col, where)
    stats = sa.select(
        sa.func.min(index), sa.func.max(index), sa.func.count(), sa.func.count(index)
    ).select_from(source)
    try:
        with engine.connect() as conn:
            low, high, rows, indexed = conn.execute(stats).one()
            head = pd.read_sql(
                sa.select(index, *[source.c[n] for n in names]).limit(100),
                conn,
                index_col=index_col,
            )
    except sa.exc.OperationalError as exc:
        raise connect_error(url, exc) from None
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(f"cannot read {where} of {safe_url(url)}: {exc}") from None
    if rows == 0:
        raise DataError(f"{where} of {safe_url(url)} has no rows: the dataset is empty")
    if indexed < rows:
        raise DataError(
            f"index column {index_col!r} of {where} has {rows - indexed} NULL values; those "
            "rows would be lost: choose a NOT NULL column with index_col="
        )
    meta = head.iloc[:0].copy()
    for name in names:
        dtype = _dtype_for(source.c[name])
        if dtype is not None:
            meta[name] = meta[name].astype(dtype)
    if datetime:
        low, high = pd.Timestamp(low), pd.Timestamp(high)
        meta.index = meta.index.astype("datetime64[ns]")
    else:
        meta.index = meta.index.astype(np.int64)
    n = int(npartitions) if npartitions else max(1, math.ceil(rows / rows_per_partition))
    edges, divisions = _bounds(low, high, n, datetime)
    pieces = [(edges[i], edges[i + 1], i == len(edges) - 2, i) for i in range(len(edges) - 1)]
    if datetime:
        divisions = [pd.Timestamp(d) for d in divisions]
    return dd.from_map(
        _read_range,
        pieces,
        args=[url, source, index_col, meta],
        meta=meta,
        divisions=divisions,
        label="adp-read-sql",
        enforce_metadata=False,
    )


def _default_index(source: Any, where: str) -> str:
    keys = [c for c in source.c if getattr(c, "primary_key", False)]
    if len(keys) == 1 and _is_integer(keys[0]):
        return str(keys[0].name)
    candidates = [c.name for c in source.c if _is_integer(c) or _is_datetime(c)]
    raise DataError(
        f"{where} has no usable index column (a single-column integer primary key): name an "
        f"integer or datetime column with index_col=; candidates: {candidates}"
    )


def _python_type(column: Any) -> type | None:
    """The column type's Python type; ``None`` for types that have none (SQLAlchemy's
    ``TypeEngine.python_type`` raises NotImplementedError for those, e.g. ``NullType``)."""
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def _is_integer(column: Any) -> bool:
    return _python_type(column) is int


def _is_datetime(column: Any) -> bool:
    kind = _python_type(column)
    return kind is not None and kind.__name__ in ("datetime", "date")


def _check_index_type(index: Any, name: str, where: str) -> bool:
    if _is_integer(index):
        return False
    if _is_datetime(index):
        return True
    raise DataError(
        f"index column {name!r} of {where} has type {index.type}; partitioning needs an "
        "integer or datetime column: choose another with index_col="
    )

"""Writing a scored frame to a database table, idempotently.

Every partition is written on a worker into a staging table, tagged with its partition
number; a retried task first deletes its own rows, so the staging table holds each row
once whatever failed. Then, in one transaction, the staging rows replace the table
(``overwrite``), are merged into it on the key (``upsert``: rows with the same key are
replaced, others kept) or create it (``error`` mode refuses an existing table). Re-running
a job therefore neither duplicates nor loses rows, and a failed run leaves the target as
it was.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Literal

import dask
import dask.dataframe as dd
import pandas as pd
import sqlalchemy as sa

from adp.db import check_identifier, connect_error, engine_for, parse_url, safe_url
from adp.errors import ConfigError, DataError, OutputExistsError, SourceError

WriteMode = Literal["error", "overwrite", "upsert"]
_PART = "_adp_part"
_CHUNK = 5_000


def _prepare(part: pd.DataFrame, index_name: str | None) -> pd.DataFrame:
    frame = part.reset_index() if index_name is not None else part.reset_index(drop=True)
    for name in frame.columns:
        if frame[name].dtype == object:
            frame[name] = frame[name].map(
                lambda v: json.dumps(list(v)) if isinstance(v, list | tuple) else v
            )
    return frame


def _write_stage(
    part: pd.DataFrame, url: str, stage: str, number: int, index_name: str | None
) -> int:
    frame = _prepare(part, index_name)
    frame[_PART] = number
    engine = engine_for(url)
    with engine.begin() as conn:
        table = sa.Table(stage, sa.MetaData(), autoload_with=conn)
        conn.execute(sa.delete(table).where(table.c[_PART] == number))
        if len(frame):
            frame.to_sql(stage, conn, if_exists="append", index=False, chunksize=_CHUNK)
    return len(frame)


def _index_name(ddf: dd.DataFrame) -> str | None:
    name = ddf.index.name
    if name is None or name in ddf.columns:
        return None
    return str(name)


def write_table(
    scored: dd.DataFrame,
    url: str,
    table: str,
    *,
    key: Sequence[str],
    mode: WriteMode = "error",
) -> int:
    """Write ``scored`` to the database table ``table``, idempotently.

    Parameters
    ----------
    scored : dask.dataframe.DataFrame
        The rows to write. A named index becomes a column; list values (such as
        ``top_features``) are stored as JSON text.
    url : str
        A SQLAlchemy database URL every worker can reach.
    table : str
        The target table: a plain identifier (letters, digits, ``_``).
    key : sequence of str
        The columns (or index name) that identify a row; must be unique in ``scored``.
        ``upsert`` replaces the target's rows with the same key; the target gets a unique
        index on it.
    mode : {"error", "overwrite", "upsert"}
        ``error`` refuses an existing table, ``overwrite`` replaces it whole, ``upsert``
        merges on ``key`` (creating the table when absent).

    Returns
    -------
    int
        Rows written.

    Raises
    ------
    adp.errors.OutputExistsError
        ``mode="error"`` and the table exists; ``upsert`` into a table of other columns.
    adp.errors.DataError
        A key column is missing, or a key value occurs twice (naming it).
    """
    parse_url(url)
    check_identifier(table)
    if mode not in ("error", "overwrite", "upsert"):
        raise ConfigError(f"mode must be 'error', 'overwrite' or 'upsert', got {mode!r}")
    key = list(key)
    if not key:
        raise ConfigError("write_table needs key=[...]: the columns that identify a row")
    index_name = _index_name(scored)
    columns = ([index_name] if index_name else []) + list(scored.columns)
    missing = [k for k in key if k not in columns]
    if missing:
        raise DataError(f"key columns {missing} are not in the scored frame; it has {columns}")
    for name in columns:
        check_identifier(str(name), what="column name")
    engine = engine_for(url)
    try:
        exists = sa.inspect(engine).has_table(table)
    except sa.exc.OperationalError as exc:
        raise connect_error(url, exc) from None
    if exists and mode == "error":
        raise OutputExistsError(
            f"table {table!r} already exists in {safe_url(url)}; set mode 'overwrite' to "
            "replace it or 'upsert' to merge on the key"
        )
    if exists and mode == "upsert":
        _check_compatible(engine, table, columns, key, url)
    stage = f"_adp_stage_{uuid.uuid4().hex[:12]}"
    meta = _prepare(scored._meta, index_name)
    meta[_PART] = pd.Series(dtype="int64")
    with engine.begin() as conn:
        meta.to_sql(stage, conn, index=False)
    try:
        tasks = [
            dask.delayed(_write_stage, pure=False)(part, url, stage, i, index_name)
            for i, part in enumerate(scored.to_delayed())
        ]
        rows = int(sum(dask.compute(*tasks)))
        _commit(engine, url, table, stage, columns, key, mode)
    finally:
        with engine.begin() as conn:
            sa.Table(stage, sa.MetaData()).drop(conn, checkfirst=True)
    return rows


def _check_compatible(
    engine: sa.Engine, table: str, columns: list[str], key: list[str], url: str
) -> None:
    existing = [c["name"] for c in sa.inspect(engine).get_columns(table)]
    if set(existing) != set(columns):
        raise OutputExistsError(
            f"table {table!r} in {safe_url(url)} holds a different dataset: its columns are "
            f"{existing}, the scored rows have {columns}. Write to another table or use "
            "mode 'overwrite'"
        )


def _commit(
    engine: sa.Engine,
    url: str,
    table: str,
    stage_name: str,
    columns: list[str],
    key: list[str],
    mode: WriteMode,
) -> None:
    with engine.begin() as conn:
        stage = sa.Table(stage_name, sa.MetaData(), autoload_with=conn)
        keys = [stage.c[k] for k in key]
        sa.Index(f"ix{stage_name}", *keys).create(conn)
        duplicate = conn.execute(
            sa.select(*keys, sa.func.count().label("n"))
            .group_by(*keys)
            .having(sa.func.count() > 1)
            .limit(1)
        ).first()
        if duplicate is not None:
            shown = dict(zip(key, duplicate[:-1], strict=True))
            raise DataError(
                f"key {key} is not unique in the scored rows: {shown} occurs {duplicate[-1]} "
                f"times; nothing was written to table {table!r}"
            )
        exists = sa.inspect(conn).has_table(table)
        if exists and mode == "error":
            raise OutputExistsError(f"table {table!r} appeared in {safe_url(url)} during the run")
        if exists and mode == "overwrite":
            sa.Table(table, sa.MetaData(), autoload_with=conn).drop(conn)
            exists = False
        if not exists:
            target = sa.Table(
                table,
                sa.MetaData(),
                *[sa.Column(c, stage.c[c].type) for c in columns],
                sa.Index(f"ux_{table}_key", *key, unique=True),
            )
            target.create(conn)
        else:
            target = sa.Table(table, sa.MetaData(), autoload_with=conn)
            match = sa.and_(*[target.c[k] == stage.c[k] for k in key])
            conn.execute(sa.delete(target).where(sa.exists().where(match)))
        source = sa.select(*[stage.c[c] for c in columns])
        conn.execute(sa.insert(target).from_select(columns, source))


def table_rows(url: str, table: str) -> int:
    """Rows in ``table`` (a reflected table), for tests and run summaries."""
    engine = engine_for(url)
    try:
        target = sa.Table(check_identifier(table), sa.MetaData(), autoload_with=engine)
    except sa.exc.NoSuchTableError:
        raise SourceError(f"table {table!r} is not in {safe_url(url)}") from None
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(target)).scalar_one())

"""Pre-flight of a job's source: that it exists, the credentials work (one cheap call),
and its columns, read without a cluster from the Parquet footers, a CSV's header line
(duplicate headers refused), a JSON-lines file's first record or a table's definition.

A Parquet source's columns come from its first file; the footers of its first
:data:`~adp.io.footers.PREFLIGHT_FOOTERS` files are read too (in threads) and must agree
with it, so a file with another schema or a corrupt footer is named before the cluster
starts, as the job would name it later.

Remote calls use ADP's connect and read timeouts and bounded retries
(:func:`adp.io.s3.with_timeouts`, :func:`adp.db.server_connect_args`): a dead or hung
S3 endpoint or database server fails within ~15 s by default, naming it.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import fsspec

from adp.config import settings
from adp.errors import AdpError, DataError, SourceError, bounded
from adp.io.s3 import S3_PROTOCOLS, remote_errors, with_timeouts
from adp.jobs.spec import SourceSpec
from adp.paths import check_allowed, check_storage_options, protocol_of


def filesystem(uri: str, options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The file system and path of ``uri``, with ADP's timeouts and bounded retries for
    S3 (:func:`adp.io.s3.with_timeouts`: s3fs's own retry loop does not multiply them)."""
    opts = with_timeouts(uri, options) or {}
    fs, path = fsspec.core.url_to_fs(uri, **opts)
    return fs, str(path)


def source_columns(source: SourceSpec, notes: list[str] | None = None) -> list[str] | None:
    """Check that ``source`` exists and can be read with its credentials; return its
    columns when a footer, header or table definition gives them (None otherwise).

    Parameters
    ----------
    source : SourceSpec
        The spec's source section.
    notes : list of str, optional
        Lines about what was checked beyond the columns are appended to it (how many
        Parquet footers agree).

    Raises
    ------
    adp.errors.AdpError
        :class:`~adp.errors.SourceError` for a missing source or a failing store,
        :class:`~adp.errors.DataError` for a corrupt file, schema drift between files
        (naming both), or ``source.columns`` the source lacks.
    """
    from adp.io.read import source_kind

    kind = source_kind(source.uri, source.format)
    if kind == "sql":
        return _sql_columns(source)
    check_allowed(source.uri)
    check_storage_options(source.storage_options)
    options = with_timeouts(source.uri, source.storage_options)
    with remote_errors(source.uri, options, "read"):
        fs, path = filesystem(source.uri, options)
        if protocol_of(source.uri) in S3_PROTOCOLS:
            found = _s3_probe(fs, path)
        else:
            found = any(ch in path for ch in "*?[") or fs.exists(path)
        if not found:
            raise SourceError(f"source {source.uri!r} does not exist")
    if kind == "array":
        return None
    from adp.io.lake import data_files, infer_format

    files = data_files(source.uri, options)
    fmt = source.format or infer_format(source.uri, options)
    with remote_errors(source.uri, options, "read"):
        if fmt == "parquet":
            columns = _parquet_columns(fs, files[0], path)
            if source.options.get("validate", True) is not False:
                note = _check_footers(fs, files, path, source)
                if notes is not None:
                    notes.append(note)
        elif fmt == "csv":
            columns = _csv_columns(fs, files[0], source.options)
        elif fmt == "json":
            columns = _json_columns(fs, files[0])
        else:
            return None
    if source.columns is not None:
        absent = [c for c in source.columns if c not in columns]
        if absent:
            raise DataError(
                f"source.columns names {bounded(absent)}, not in {source.uri!r}; its "
                f"columns are {bounded(columns)}"
            )
        return list(source.columns)
    return columns


def _s3_probe(fs: Any, path: str) -> bool:
    """One request: is there any object under ``path`` (a key, prefix or glob)? Checks the
    endpoint, the credentials and the bucket at once."""
    bucket, _, key = path.partition("/")
    for i, ch in enumerate(key):
        if ch in "*?[":
            key = key[:i]
            break
    try:
        answer = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, MaxKeys=1)
    except FileNotFoundError:
        return False
    return bool(answer.get("KeyCount") or answer.get("Contents"))


def _parquet_columns(fs: Any, file: str, root: str) -> list[str]:
    import pyarrow.parquet as pq

    while len(_NUMERIC) > 8:
        _NUMERIC.pop(next(iter(_NUMERIC)))
    try:
        with fs.open(file, "rb") as f:
            schema = pq.ParquetFile(f).schema_arrow
    except AdpError:
        raise
    except Exception as exc:
        raise DataError(
            f"Parquet file {file!r} is corrupt or truncated: cannot read its footer "
            f"({type(exc).__name__}: {str(exc)[:160]}). Remove or rewrite it"
        ) from None
    columns = [n for n in schema.names if not n.startswith("__index_level_")]
    relative = file[len(root.rstrip("/")) + 1 :] if file.startswith(root.rstrip("/")) else ""
    hive = [part.split("=", 1)[0] for part in relative.split("/")[:-1] if "=" in part]
    columns += [h for h in hive if h not in columns]
    _NUMERIC[file] = {n: _arrow_numeric(schema.field(n).type) for n in schema.names}
    return columns


def _check_footers(fs: Any, files: list[str], root: str, source: SourceSpec) -> str:
    """Read the footers of the first :data:`~adp.io.footers.PREFLIGHT_FOOTERS` files the
    job reads (``filters`` on hive folders applied) and refuse corrupt ones and schema
    drift (on ``source.columns`` when given), as the job's own check would. Returns a line
    for the report."""
    from adp.io.footers import PREFLIGHT_FOOTERS, check_footers, read_footers_in_threads
    from adp.io.hive import prune

    filters = source.options.get("filters")
    read = prune(files, root.rstrip("/"), filters)
    if not read:
        raise DataError(f"no file of {source.uri!r} matches filters {filters}: nothing to read")
    footers = read_footers_in_threads(fs, read[:PREFLIGHT_FOOTERS])
    check_footers(footers, source.uri, list(source.columns) if source.columns else None)
    if len(read) > PREFLIGHT_FOOTERS:
        return (
            f"the footers of the first {PREFLIGHT_FOOTERS} of {len(read)} Parquet files agree "
            "(the job checks the others' when it reads them)"
        )
    if len(read) == 1:
        return "the Parquet file's footer is readable"
    return f"the footers of all {len(read)} Parquet files agree"


#: Whether each column of the Parquet footers read is numeric (file -> column -> bool);
#: bounded: only the latest few files are kept.
_NUMERIC: dict[str, dict[str, bool]] = {}


def _arrow_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def _first_line(fs: Any, file: str) -> str:
    compression = "gzip" if file.endswith(".gz") else None
    with fs.open(file, "rb", compression=compression) as raw:
        head = raw.read(1 << 20)
    text = head.decode("utf-8", errors="replace")
    return text.splitlines()[0] if text else ""


def _csv_columns(fs: Any, file: str, options: Mapping[str, Any]) -> list[str]:
    if options.get("header", "infer") is None or options.get("names") is not None:
        return list(options.get("names") or [])
    sep = options.get("sep", options.get("delimiter", ","))
    line = _first_line(fs, file)
    if not line.strip():
        raise DataError(f"CSV file {file!r} has no header line: it is empty")
    header = next(csv.reader(io.StringIO(line), delimiter=str(sep)))
    seen: set[str] = set()
    twice = [c for c in header if c in seen or seen.add(c)]  # type: ignore[func-returns-value]
    if twice:
        raise DataError(
            f"CSV file {file!r} has duplicate column names in its header: "
            f"{bounded(dict.fromkeys(twice))}; rename them (pandas would read them as "
            "'name.1')"
        )
    return header


def _json_columns(fs: Any, file: str) -> list[str]:
    line = _first_line(fs, file)
    try:
        record = json.loads(line) if line.strip() else {}
    except ValueError as exc:
        raise DataError(f"JSON-lines file {file!r}: its first line is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise DataError(f"JSON-lines file {file!r}: its first line is not an object")
    return [str(k) for k in record]


def _sql_columns(source: SourceSpec) -> list[str] | None:
    import sqlalchemy as sa

    from adp.db import connect_error, safe_url

    engine = sql_engine(source.uri, "source.uri")
    ping(engine, source.uri)
    table = source.options.get("table")
    if not isinstance(table, str):
        return None
    schema = source.options.get("schema")
    try:
        inspector = sa.inspect(engine)
        names = inspector.get_table_names(schema=schema) + inspector.get_view_names(schema=schema)
        if table not in names:
            raise SourceError(
                f"table {table!r} is not in the database {safe_url(source.uri)}; its tables "
                f"are {bounded(sorted(names))}"
            )
        columns = [str(c["name"]) for c in inspector.get_columns(table, schema=schema)]
    except sa.exc.SQLAlchemyError as exc:
        raise connect_error(source.uri, exc) from None
    return columns


def sql_engine(url: str, field: str) -> Any:
    """The engine of database ``url``; a driver that is not installed or a URL SQLAlchemy
    cannot use is a :class:`~adp.errors.ConfigError` naming ``field`` and the driver
    (:func:`adp.db.driver_engine`)."""
    from adp.db import driver_engine

    return driver_engine(url, field)


def ping(engine: Any, url: str) -> None:
    """``select 1``, tried 1 + ``adp.io.retries`` times; fails naming the server."""
    import sqlalchemy as sa

    from adp.db import connect_error

    attempts = 1 + settings().io.retries
    for attempt in range(attempts):
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            return
        except sa.exc.SQLAlchemyError as exc:
            if attempt + 1 == attempts:
                raise connect_error(url, exc) from None
            time.sleep(0.2)


def numeric_columns(columns: Iterable[str]) -> dict[str, bool] | None:
    """Whether each of ``columns`` is numeric, when a Parquet footer read by
    :func:`source_columns` told (None otherwise)."""
    wanted = set(columns)
    for numeric in reversed(list(_NUMERIC.values())):
        if wanted <= set(numeric):
            return numeric
    return None


__all__ = ["filesystem", "numeric_columns", "ping", "source_columns", "sql_engine"]

"""``adp.read``: one call for every kind of source, returning a lazy dask DataFrame."""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd

from adp.errors import ConfigError

SQL_OPTIONS = (
    "table",
    "query",
    "index_col",
    "npartitions",
    "filters",
    "schema",
    "rows_per_partition",
)
ARRAY_OPTIONS = ("variables", "time_dim", "chunks", "window", "storage_options")
FORMATS = ("parquet", "csv", "json", "sql", "netcdf", "zarr")


def source_kind(uri: str, format: str | None = None) -> str:
    """``"sql"``, ``"array"`` or ``"lake"``: which reader ``uri`` goes to."""
    from adp.db import is_sql_url
    from adp.io.arrays import array_format

    if format == "sql" or (format is None and is_sql_url(uri)):
        return "sql"
    if format in ("netcdf", "zarr") or (format is None and array_format(uri)):
        return "array"
    return "lake"


def read(
    uri: str,
    format: str | None = None,
    columns: list[str] | None = None,
    **options: Any,
) -> dd.DataFrame:
    """Open a dataset lazily as a partitioned :class:`dask.dataframe.DataFrame`.

    Every kind of source is read on the workers, one partition per task; the client reads
    only metadata.

    Parameters
    ----------
    uri : str
        Where the data is:

        - a lake: a local or fsspec (``s3://bucket/prefix/``) file, folder or glob of
          Parquet, CSV or JSON-lines files (see :func:`adp.io.lake.read_lake`);
        - a database URL (``sqlite:///metrics.db``,
          ``postgresql+psycopg://user@host/db``) with ``table=`` or ``query=`` (see
          :func:`adp.io.sql.read_sql`);
        - a netCDF file (``.nc``) or zarr store (``.zarr``, local or S3), turned into one
          row per time step and sensor (see :func:`adp.io.arrays.read_array`).
    format : str, optional
        ``"parquet"``, ``"csv"``, ``"json"``, ``"sql"``, ``"netcdf"`` or ``"zarr"``;
        inferred from ``uri`` when omitted.
    columns : list of str, optional
        Read only these columns.
    **options
        ``storage_options`` for remote stores, and the reader's own options: for SQL
        ``table``, ``query``, ``index_col``, ``npartitions``, ``filters``, ``schema``; for
        arrays ``variables``, ``time_dim``, ``chunks``, ``window``; for lakes ``filters``,
        ``validate``, ``blocksize`` and dask's reader options.

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy: nothing but metadata is read until the frame is computed.

    Examples
    --------
    >>> ddf = adp.read("data/demo-lake/")  # doctest: +SKIP
    >>> ddf = adp.read("s3://lake/metrics/", storage_options={"anon": True})  # doctest: +SKIP
    >>> ddf = adp.read("sqlite:///m.db", table="metrics", index_col="id")  # doctest: +SKIP
    >>> ddf = adp.read("sensors.zarr", window=6)  # doctest: +SKIP
    """
    if format is not None and format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}: use one of {list(FORMATS)}")
    if not isinstance(uri, str) or not uri:
        raise ConfigError(f"uri must be a non-empty string, got {uri!r}")
    kind = source_kind(uri, format)
    if kind == "sql":
        from adp.io.sql import read_sql

        if options.get("storage_options", "absent") is None:
            del options["storage_options"]  # job specs pass it for every kind of source
        _only(options, SQL_OPTIONS, "a database")
        return read_sql(uri, columns=columns, **options)
    if kind == "array":
        from adp.io.arrays import read_array

        _only(options, ARRAY_OPTIONS, "an array store")
        ddf = read_array(uri, format, **options)  # type: ignore[arg-type]
        return ddf[columns] if columns else ddf
    from adp.io.lake import read_lake

    return read_lake(uri, format, columns, **options)  # type: ignore[arg-type]


def _only(options: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"options {unknown} do not apply to {what}; valid options: {sorted(allowed)}"
        )

"""``adp.read``: one call for every kind of source, returning a lazy dask DataFrame."""

from __future__ import annotations

from typing import Any

import dask.dataframe as dd

from adp.errors import ConfigError
from adp.io.lake import read_lake

_LAKE_FORMATS = ("parquet", "csv")


def read(
    uri: str,
    format: str | None = None,
    columns: list[str] | None = None,
    **options: Any,
) -> dd.DataFrame:
    """Open a dataset lazily as a partitioned :class:`dask.dataframe.DataFrame`.

    Parameters
    ----------
    uri : str
        Where the data is: a local file, folder or glob of Parquet or CSV files
        (``data/lake/``, ``data/*.csv``), or an fsspec URL.
    format : str, optional
        ``"parquet"`` or ``"csv"``; inferred from the name when omitted.
    columns : list of str, optional
        Read only these columns.
    **options
        ``storage_options`` for remote stores, and reader options passed through to dask.

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy: nothing but metadata is read until the frame is computed.

    Examples
    --------
    >>> ddf = adp.read("data/demo-lake/")  # doctest: +SKIP
    >>> ddf.npartitions  # doctest: +SKIP
    14
    """
    if format is not None and format not in _LAKE_FORMATS:
        raise ConfigError(f"unknown format {format!r}: use one of {list(_LAKE_FORMATS)}")
    return read_lake(uri, format, columns, **options)  # type: ignore[arg-type]

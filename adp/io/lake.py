"""Lake sources: Parquet and CSV files, folders and globs, read lazily with dask."""

from __future__ import annotations

from typing import Any, Literal

import dask.dataframe as dd
import fsspec

from adp.errors import ConfigError, SourceError
from adp.io.paths import check_allowed

LakeFormat = Literal["parquet", "csv"]

_SUFFIXES: dict[str, LakeFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
}


def infer_format(uri: str, storage_options: dict[str, Any] | None = None) -> LakeFormat:
    """Guess a lake format from the file suffix, or from the files a folder holds.

    Raises
    ------
    adp.errors.ConfigError
        When the format cannot be told; the message asks for ``format=``.
    """
    lowered = uri.lower().rstrip("/")
    for suffix, fmt in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if fs.isdir(path):
        for name in sorted(fs.find(path)):
            base = name.rsplit("/", 1)[-1]
            if base.startswith(("_", ".")):
                continue
            for suffix, fmt in _SUFFIXES.items():
                if base.lower().endswith(suffix):
                    return fmt
    raise ConfigError(
        f"cannot tell the format of {uri!r} from its name or its files: "
        f"pass format='parquet' or format='csv'"
    )


def _check_exists(uri: str, storage_options: dict[str, Any] | None) -> None:
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if any(ch in path for ch in "*?["):
        if not fs.glob(path):
            raise SourceError(f"no files match {uri!r}")
        return
    if not fs.exists(path):
        raise SourceError(f"{uri!r} does not exist")
    if fs.isdir(path):
        files = [f for f in fs.find(path) if not f.rsplit("/", 1)[-1].startswith(("_", "."))]
        if not files:
            raise SourceError(f"{uri!r} is an empty folder: no data files to read")


def read_lake(
    uri: str,
    format: LakeFormat | None = None,
    columns: list[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> dd.DataFrame:
    """Open a Parquet or CSV lake dataset lazily.

    Parameters
    ----------
    uri : str
        A file, a folder of files (Parquet datasets, including hive-style partitions) or a
        glob, local or any fsspec URL.
    format : {"parquet", "csv"}, optional
        Inferred from the suffix or the folder's files when omitted.
    columns : list of str, optional
        Read only these columns (pushed down to the Parquet reader).
    storage_options : dict, optional
        fsspec options for remote stores.
    **options
        Passed to :func:`dask.dataframe.read_parquet` or :func:`dask.dataframe.read_csv`.

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per file (or row group group), nothing read yet but metadata.
    """
    check_allowed(uri)
    _check_exists(uri, storage_options)
    fmt = format or infer_format(uri, storage_options)
    try:
        if fmt == "parquet":
            return dd.read_parquet(uri, columns=columns, storage_options=storage_options, **options)
        if fmt == "csv":
            ddf = dd.read_csv(uri, storage_options=storage_options, **options)
            return ddf[columns] if columns else ddf
    except (OSError, ValueError) as exc:
        raise SourceError(f"cannot open {fmt} data at {uri!r}: {exc}") from exc
    raise ConfigError(f"unknown lake format {fmt!r}: use 'parquet' or 'csv'")

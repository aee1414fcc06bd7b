"""Lake sources: Parquet, CSV and JSON-lines files, folders and globs, local or on any
fsspec store (S3 through s3fs), read lazily with dask, one task per file or block."""

from __future__ import annotations

from typing import Any, Literal

import dask.dataframe as dd
import fsspec

from adp.errors import AdpError, ConfigError, DataError, SourceError
from adp.io.footers import check_footers, read_footers
from adp.io.hive import prune
from adp.io.outputs import committed_files
from adp.io.parquet_engine import CheckedArrowEngine
from adp.io.s3 import remote_errors
from adp.paths import check_allowed, check_storage_options

LakeFormat = Literal["parquet", "csv", "json"]
LAKE_FORMATS: tuple[str, ...] = ("parquet", "csv", "json")

_SUFFIXES: dict[str, LakeFormat] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".csv.gz": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".jsonl.gz": "json",
}
_JSON_BLOCKSIZE = 64 * 2**20


def _is_data_file(path: str) -> bool:
    return not path.rsplit("/", 1)[-1].startswith(("_", "."))


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
    with remote_errors(uri, storage_options, "list"):
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if fs.isdir(path):
            for name in sorted(fs.find(path)):
                base = name.rsplit("/", 1)[-1]
                if not _is_data_file(name):
                    continue
                for suffix, fmt in _SUFFIXES.items():
                    if base.lower().endswith(suffix):
                        return fmt
    raise ConfigError(
        f"cannot tell the format of {uri!r} from its name or its files: "
        f"pass format= one of {list(LAKE_FORMATS)}"
    )


def data_files(uri: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The data files of a file, folder (recursively) or glob, skipping ``_*`` and ``.*``.

    Raises
    ------
    adp.errors.SourceError
        When nothing exists there, or a folder holds no data files.
    """
    with remote_errors(uri, storage_options, "list"):
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        if any(ch in path for ch in "*?["):
            files = [f for f in fs.glob(path) if _is_data_file(f) and not fs.isdir(f)]
            if not files:
                raise SourceError(f"no files match {uri!r}")
            return sorted(files)
        if not fs.exists(path):
            raise SourceError(f"{uri!r} does not exist")
        if fs.isdir(path):
            files = [f for f in fs.find(path) if _is_data_file(f)]
            if not files:
                raise SourceError(f"{uri!r} is an empty folder: no data files to read")
            return sorted(files)
        return [path]


def _check_exists(uri: str, storage_options: dict[str, Any] | None) -> None:
    data_files(uri, storage_options)


def parquet_files(uri: str, storage_options: dict[str, Any] | None = None) -> list[str]:
    """The data files of a Parquet dataset (fs paths): those its ADP manifest names when
    ``uri`` is an ADP output, else every data file under it.

    Raises
    ------
    adp.errors.DataError
        When files an ADP manifest names are missing.
    """
    committed = committed_files(uri, storage_options)
    if committed is None:
        return data_files(uri, storage_options)
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    paths = [str(fsspec.core.url_to_fs(f, **(storage_options or {}))[1]) for f in committed]
    present = set(fs.find(root))
    gone = [p for p in paths if p not in present]
    if gone:
        raise DataError(
            f"the ADP output {uri!r} is incomplete: {len(gone)} of the {len(paths)} files "
            f"its manifest names are missing (for example {gone[0]!r}). Re-run the job that "
            "wrote it"
        )
    return paths


def check_parquet(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    columns: list[str] | None = None,
    filters: list[Any] | None = None,
) -> int:
    """Read the footers of a Parquet dataset's files on the workers and check them.

    Files pruned away by ``filters`` on hive partition folders are not read; an ADP
    output's files are those its manifest names.

    Returns
    -------
    int
        Rows in the files checked.

    Raises
    ------
    adp.errors.DataError
        Naming a corrupt or truncated file, or the files and columns of a schema drift.
    """
    files = parquet_files(uri, storage_options)
    fs, root = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    files = prune(files, root.rstrip("/"), filters)
    if not files:
        raise DataError(f"no file of {uri!r} matches filters {filters}: the dataset is empty")
    with remote_errors(uri, storage_options, "read"):
        footers = read_footers(fs, files)
    check_footers(footers, uri, columns)
    return sum(f.rows for f in footers)


def read_lake(
    uri: str,
    format: LakeFormat | None = None,
    columns: list[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    **options: Any,
) -> dd.DataFrame:
    """Open a Parquet, CSV or JSON-lines lake dataset lazily.

    Parameters
    ----------
    uri : str
        A file, a folder of files (Parquet datasets, including hive-style partition
        folders such as ``site=a/date=2026-11-01/``) or a glob; a local path or any fsspec
        URL (``s3://bucket/prefix/``).
    format : {"parquet", "csv", "json"}, optional
        Inferred from the suffix or the folder's files when omitted. ``json`` is JSON
        lines: one object per line.
    columns : list of str, optional
        Read only these columns (pushed down to the Parquet reader: column pruning).
    storage_options : dict, optional
        fsspec options for remote stores, for example ``{"key": ..., "secret": ...,
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}``. Endpoints are
        checked with :func:`adp.paths.check_storage_options` before anything connects.
    **options
        ``validate`` (Parquet, default True): read every file's footer on the workers
        first, so that a corrupt file or a schema drift fails now, naming the file; set
        False to skip it on very large lakes. ``filters`` (Parquet): row-group filters,
        and partition pruning when they name hive partition folders. Everything else is
        passed to :func:`dask.dataframe.read_parquet`, :func:`~dask.dataframe.read_csv`
        or :func:`~dask.dataframe.read_json` (``blocksize``, ``dtype``, ...).

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per file, row group or block; nothing read yet but metadata.

    Raises
    ------
    adp.errors.AccessDeniedError
        Outside ``adp.io.allowed-roots``, on a link-local endpoint, or without credentials.
    adp.errors.SourceError
        A missing path, an empty folder or an unreachable endpoint.
    adp.errors.DataError
        A corrupt Parquet file or schema drift (naming the files), or no rows left.
    """
    check_allowed(uri)
    check_storage_options(storage_options)
    validate = bool(options.pop("validate", True))
    _check_exists(uri, storage_options)
    fmt = format or infer_format(uri, storage_options)
    if fmt not in LAKE_FORMATS:
        raise ConfigError(f"unknown lake format {fmt!r}: use one of {list(LAKE_FORMATS)}")
    try:
        with remote_errors(uri, storage_options, "read"):
            if fmt == "parquet":
                if validate:
                    check_parquet(uri, storage_options, columns, options.get("filters"))
                committed = committed_files(uri, storage_options)
                options.setdefault("engine", CheckedArrowEngine)
                return dd.read_parquet(
                    uri if committed is None else committed,
                    columns=columns,
                    storage_options=storage_options,
                    **options,
                )
            # CSV and JSON readers take files, not folders: expand them here.
            fs = fsspec.core.url_to_fs(uri, **(storage_options or {}))[0]
            paths = [fs.unstrip_protocol(p) for p in data_files(uri, storage_options)]
            if fmt == "csv":
                ddf = dd.read_csv(paths, storage_options=storage_options, **options)
            else:
                options.setdefault("blocksize", _JSON_BLOCKSIZE)
                options.setdefault("orient", "records")
                ddf = dd.read_json(paths, lines=True, storage_options=storage_options, **options)
    except AdpError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise SourceError(f"cannot open {fmt} data at {uri!r}: {exc}") from exc
    if columns:
        missing = [c for c in columns if c not in ddf.columns]
        if missing:
            raise DataError(
                f"columns {missing} are not in {uri!r}; its columns are {list(ddf.columns)}"
            )
        ddf = ddf[columns]
    return ddf

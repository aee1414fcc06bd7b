"""Lake sources: Parquet, CSV and JSON-lines files, folders and globs, local or on any
fsspec store (S3 through s3fs), read lazily with dask, one task per file or block."""

from __future__ import annotations

from typing import Any, Literal

import dask.dataframe as dd
import fsspec
import pandas as pd

from adp.errors import AdpError, ConfigError, DataError, SourceError, one_line
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


class FileReader:
    """pandas' reader (``pd.read_csv`` or ``pd.read_json``) for the blocks of one file: a
    parse error, or a cell that does not match the column's type, is a
    :class:`~adp.errors.DataError` naming the file (and the column), not pandas' error.

    Parameters
    ----------
    reader : callable
        ``pandas.read_csv`` or ``pandas.read_json``.
    file : str
        The file whose blocks it reads, for messages.
    kind : str
        ``"CSV"`` or ``"JSON-lines"``, for messages.

    Attributes
    ----------
    expected : dict of str to dtype, optional
        The column types the dataset was given (set once its metadata is known); a
        block whose numeric column read as text, or whose integer column has missing
        values, is refused naming the file and the column.
    """

    def __init__(self, reader: Any, file: str, kind: str) -> None:
        self.reader = reader
        self.file = file.removeprefix("file://")
        self.kind = kind
        self.__name__ = reader.__name__  # dask reads the reader's name
        self.expected: dict[str, Any] | None = None

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("adp-file-reader", self.reader.__name__, self.file)

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        try:
            frame = self.reader(*args, **kwargs)
        except (ValueError, TypeError, UnicodeDecodeError) as exc:  # pandas' ParserError too
            self._explain(args, kwargs)
            raise DataError(
                f"cannot parse {self.kind} file {self.file!r}: {one_line(str(exc), 200)}"
            ) from None
        if self.expected:
            self._check_types(frame, self.expected)
        return frame

    def _explain(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """After a failed read with given column types, read the block again without them
        to name the column whose cells do not match (raises when it finds one)."""
        types = kwargs.get("dtype")
        if not isinstance(types, dict) or not args or not hasattr(args[0], "seek"):
            return
        try:
            args[0].seek(0)
            frame = self.reader(args[0], **{k: v for k, v in kwargs.items() if k != "dtype"})
        except Exception:  # the block does not parse at all: the generic message stands
            return
        expected = {}
        for column, kind in types.items():
            try:
                expected[column] = pd.api.types.pandas_dtype(kind)
            except TypeError:  # not a type pandas knows: not a numeric column either
                continue
        self._check_types(frame, expected)

    def _check_types(self, frame: pd.DataFrame, expected: dict[str, Any]) -> None:
        for column, dtype in expected.items():
            if column not in frame.columns or getattr(dtype, "kind", "O") not in "iuf":
                continue
            got = frame[column].dtype
            if got.kind not in "iufb":
                values = frame[column]
                bad = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
                example = f" such as {one_line(repr(bad.iloc[0]), 40)}" if len(bad) else ""
                raise DataError(
                    f"{self.kind} file {self.file!r}: column {column!r} is numeric ({dtype}) "
                    f"in the first rows but has non-numeric cells{example}: fix the cells, "
                    "or exclude the column from features"
                )
            if dtype.kind in "iu" and got.kind == "f":
                raise DataError(
                    f"{self.kind} file {self.file!r}: integer column {column!r} has missing or "
                    "fractional values after the first rows: give it dtype float64 "
                    "(source.options.dtype), or fill the cells"
                )


def read_text_files(
    fmt: str,
    paths: list[str],
    storage_options: dict[str, Any] | None,
    options: dict[str, Any],
) -> dd.DataFrame:
    """Read CSV or JSON-lines ``paths`` lazily, one reader per file so an error names its
    file (:class:`FileReader`); the first file's numeric column types apply to all.

    Parameters
    ----------
    fmt : {"csv", "json"}
        The files' format.
    paths : list of str
        The files (fsspec URLs).
    storage_options : dict, optional
        fsspec options.
    options : dict
        Reader options for :func:`dask.dataframe.read_csv` or
        :func:`~dask.dataframe.read_json`.

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per block of each file.

    Raises
    ------
    adp.errors.DataError
        When a file's first rows do not parse, naming the file.
    """
    from dask.dataframe.io.csv import read_pandas

    frames: list[dd.DataFrame] = []
    readers: list[FileReader] = []
    for path in paths:
        opts = dict(options)
        if fmt == "csv":
            reader = FileReader(pd.read_csv, path, "CSV")
            if frames and "dtype" not in options:  # the first file's numeric types apply
                first = frames[0]._meta.dtypes
                opts["dtype"] = {c: t for c, t in first.items() if t.kind in "iuf"}
            frame = read_pandas(reader, path, storage_options=storage_options, **opts)
        else:
            reader = FileReader(pd.read_json, path, "JSON-lines")
            opts.setdefault("blocksize", _JSON_BLOCKSIZE)
            opts.setdefault("orient", "records")
            if frames and "meta" not in options:
                opts["meta"] = frames[0]._meta
            frame = dd.read_json(
                path, lines=True, storage_options=storage_options, engine=reader, **opts
            )
        frames.append(frame)
        readers.append(reader)
    for reader, frame in zip(readers, frames, strict=True):
        reader.expected = dict(frame._meta.dtypes.items())
    return frames[0] if len(frames) == 1 else dd.concat(frames)


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
            ddf = read_text_files(fmt, paths, storage_options, options)
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

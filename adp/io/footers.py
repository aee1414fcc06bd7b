"""Parquet footers: per-file schemas, row counts and corrupt files.

Only each file's footer is read (a few KiB at its end). :func:`read_footers` reads them on
the workers, one task per batch of files, so a lake of thousands of files is checked in
parallel without reading its data; :func:`read_footers_in_threads` reads up to
:data:`PREFLIGHT_FOOTERS` of them in this process, in threads, for checks before a
cluster starts. A file that cannot be read is reported as corrupt, naming it, unless the
store itself failed (unreachable, timed out, access denied): that is raised naming the
store, never blaming the file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dask
import fsspec
import pyarrow.parquet as pq
from dask.delayed import Delayed

from adp.errors import AdpError, DataError, bounded

_BATCH = 32
#: How many footers pre-flight reads at most (the first files, in order); a job reads
#: every file's footer on the workers anyway.
PREFLIGHT_FOOTERS = 256


@dataclass(frozen=True)
class FileFooter:
    """What a Parquet file's footer says, or why it could not be read."""

    path: str
    columns: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    row_groups: int = 0
    error: str | None = None


def read_footer(fs: Any, path: str) -> FileFooter:
    """The footer of the Parquet file ``path`` on ``fs``.

    Raises
    ------
    adp.errors.SourceError, adp.errors.AccessDeniedError
        When the store fails (unreachable, timed out, access denied); any other failure is
        the file's, returned as :attr:`FileFooter.error`.
    """
    try:
        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            schema = parquet.schema_arrow
            meta = parquet.metadata
            columns = {
                name: str(schema.field(name).type)
                for name in schema.names
                if not name.startswith("__index_level_")
            }
            return FileFooter(path, columns, meta.num_rows, meta.num_row_groups)
    except AdpError:
        raise
    except Exception as exc:  # every failure is reported, naming the file or the store
        from adp.io.s3 import describe_remote_error

        remote = describe_remote_error(exc, path, None, "read")
        if remote is not None:
            raise remote from exc
        return FileFooter(path, error=f"{type(exc).__name__}: {exc}")


def _read_batch(fs: Any, paths: list[str]) -> list[FileFooter]:
    return [read_footer(fs, path) for path in paths]


def footer_tasks(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[Delayed]:
    """Lazy tasks reading the footers of ``paths``, one per batch of files; each computes
    to a list of :class:`FileFooter`."""
    batches = [paths[i : i + _BATCH] for i in range(0, len(paths), _BATCH)]
    return [dask.delayed(_read_batch, pure=False)(fs, batch) for batch in batches]


def read_footers(fs: fsspec.AbstractFileSystem, paths: list[str]) -> list[FileFooter]:
    """Read the footer of every file in ``paths`` on the workers (or locally without a
    cluster), in order."""
    results = dask.compute(*footer_tasks(fs, paths))
    return [footer for batch in results for footer in batch]


def read_footers_in_threads(
    fs: fsspec.AbstractFileSystem, paths: list[str], *, threads: int = 16
) -> list[FileFooter]:
    """Read the footer of every file in ``paths`` in this process, ``threads`` at a time
    (each read waits on the store, not on the interpreter), in order.

    Raises
    ------
    adp.errors.SourceError, adp.errors.AccessDeniedError
        The first failure of the store (see :func:`read_footer`).
    """
    if len(paths) <= 1:
        return [read_footer(fs, path) for path in paths]
    with ThreadPoolExecutor(min(threads, len(paths)), thread_name_prefix="adp-footers") as pool:
        return list(pool.map(lambda path: read_footer(fs, path), paths))


@dataclass(frozen=True)
class SchemaDifference:
    """A file whose schema differs from the reference (the first file)."""

    path: str
    missing: list[str]
    extra: list[str]
    changed: dict[str, tuple[str, str]]

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"lacks columns {bounded(self.missing)}")
        if self.extra:
            parts.append(f"has extra columns {bounded(self.extra)}")
        if self.changed:
            changes = sorted(self.changed.items())
            more = f", ... and {len(changes) - 10} more" if len(changes) > 10 else ""
            parts.append(
                "changes types "
                + ", ".join(f"{c}: {a} -> {b}" for c, (a, b) in changes[:10])
                + more
            )
        return f"{self.path} " + "; ".join(parts)


def schema_differences(
    footers: list[FileFooter], columns: list[str] | None = None
) -> list[SchemaDifference]:
    """Files whose schema differs from the first readable file's, on ``columns`` if given."""
    readable = [f for f in footers if f.error is None]
    if not readable:
        return []

    def restrict(schema: dict[str, str]) -> dict[str, str]:
        return {c: t for c, t in schema.items() if columns is None or c in columns}

    reference = restrict(readable[0].columns)
    diffs = []
    for footer in readable[1:]:
        schema = restrict(footer.columns)
        missing = [c for c in reference if c not in schema]
        extra = [c for c in schema if c not in reference]
        changed = {
            c: (reference[c], schema[c])
            for c in reference
            if c in schema and reference[c] != schema[c]
        }
        if missing or extra or changed:
            diffs.append(SchemaDifference(footer.path, missing, extra, changed))
    return diffs


def check_footers(footers: list[FileFooter], uri: str, columns: list[str] | None = None) -> None:
    """Raise :class:`~adp.errors.DataError` naming corrupt files or schema drift.

    Raises
    ------
    adp.errors.DataError
        For the first unreadable file (and how many there are), or for files whose schema
        differs from the first file's, naming each file and the columns at fault.
    """
    bad = [f for f in footers if f.error is not None]
    if bad:
        more = f" (and {len(bad) - 1} more unreadable files)" if len(bad) > 1 else ""
        raise DataError(
            f"Parquet file {bad[0].path!r} in {uri!r} is corrupt or truncated: "
            f"{(bad[0].error or '').rstrip('.')}{more}. Remove or rewrite it"
        )
    diffs = schema_differences(footers, columns)
    if diffs:
        reference = next(f.path for f in footers)
        shown = "; ".join(d.describe() for d in diffs[:5])
        more = f" (and {len(diffs) - 5} more files)" if len(diffs) > 5 else ""
        raise DataError(
            f"schema drift in {uri!r}: compared with {reference!r}, {shown}{more}. Rewrite "
            "the files to one schema, or read only the columns they share with columns=[...]"
        )


def _open(fs: Any, path: str) -> Any:
    """Open ``path`` for reading on an fsspec or a pyarrow file system."""
    if hasattr(fs, "open_input_file"):
        return fs.open_input_file(path)
    return fs.open(path, "rb")


def promised_rows(fs: Any, path: str, row_groups: list[int] | None = None) -> int:
    """The rows the footer of ``path`` promises: in all, or in ``row_groups``."""
    with _open(fs, path) as f:
        meta = pq.ParquetFile(f).metadata
    if row_groups is None:
        return int(meta.num_rows)
    return sum(int(meta.row_group(i).num_rows) for i in row_groups)


def check_rows(path: str, decoded: int, promised: int) -> None:
    """Refuse a file whose decoded rows differ from what its footer promised.

    Raises
    ------
    adp.errors.DataError
        Naming the file and both counts.
    """
    if decoded != promised:
        raise DataError(
            f"Parquet file {path!r} decoded to {decoded} rows but its footer promises "
            f"{promised}: its data pages are corrupt. Remove or rewrite it"
        )


def undecodable(path: str, exc: BaseException) -> AdpError:
    """The error for a data file whose pages cannot be decoded, naming it (one line); a
    store that cannot be reached or refuses access is named as such, not the file."""
    from adp.io.s3 import describe_remote_error

    remote = describe_remote_error(exc, path, None, "read")
    if remote is not None:
        return remote
    if isinstance(exc, FileNotFoundError):  # not corrupt: gone since the listing
        return DataError(
            f"Parquet file {path!r} was listed when the source was opened but no longer "
            "exists: it was moved or removed while the job ran. Open the source again"
        )
    reason = (str(exc).strip().splitlines() or [""])[0][:300]
    return DataError(
        f"Parquet file {path!r} cannot be decoded ({type(exc).__name__}: {reason}): its data "
        "pages are corrupt or truncated. Remove or rewrite it"
    )

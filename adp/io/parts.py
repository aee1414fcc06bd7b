"""Partition files: one Parquet file per partition, written on a worker and read back.

Every partition is written as one file with a fixed name (``part.00003.parquet``), so a
task retried after a worker died rewrites the same file: a folder holds every row once.
Staged files are read back lazily, one task per file (:func:`staged_frame`), or, for the
score column alone, one task per group of about :data:`THRESHOLD_ROWS` scores
(:func:`staged_scores`): a score is 8 bytes against a whole row of features, and the
threshold's graph and scheduling grow with its partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dask.delayed import Delayed

from adp.errors import AdpError
from adp.io.footers import check_rows, undecodable
from adp.io.outputs import WrittenPart

#: Rows of staged scores per task of the threshold passes (8 bytes each).
THRESHOLD_ROWS = 1_000_000


def write_part(
    part: pd.DataFrame, path: str, storage_options: dict[str, Any] | None = None
) -> WrittenPart:
    """Write one partition as a Parquet file (index kept) and describe it."""
    table = pa.Table.from_pandas(part, preserve_index=True)
    fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
    with fs.open(fs_path, "wb") as f:
        pq.write_table(table, f)
    anomalies = int(part["is_anomaly"].sum()) if "is_anomaly" in part.columns else None
    return WrittenPart(path, len(part), int(fs.size(fs_path)), anomalies)


def inspect_and_write(
    part: pd.DataFrame,
    path: str,
    drop: list[str],
    inspect: Callable[[pd.DataFrame], Any] | None,
    storage_options: dict[str, Any] | None = None,
) -> tuple[WrittenPart, Any]:
    """Call ``inspect`` on the whole partition, then write it without the ``drop`` columns.

    Returns
    -------
    (WrittenPart, object)
        The written file and what ``inspect`` returned (None without ``inspect``).
    """
    seen = inspect(part) if inspect is not None else None
    return write_part(part.drop(columns=drop), path, storage_options), seen


def make_folder(folder: str, storage_options: dict[str, Any] | None = None) -> None:
    """Create ``folder`` (and its parents) if it does not exist."""
    fs, fs_folder = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    fs.makedirs(fs_folder, exist_ok=True)


def part_path(folder: str, number: int) -> str:
    """The file of partition ``number`` in ``folder``: ``folder/part.NNNNN.parquet``."""
    return f"{folder.rstrip('/')}/part.{number:05d}.parquet"


def write_partitions(
    ddf: dd.DataFrame, folder: str, storage_options: dict[str, Any] | None = None
) -> list[Delayed]:
    """Lazy tasks that write each partition of ``ddf`` as ``folder/part.NNNNN.parquet``.

    Returns
    -------
    list of Delayed
        One per partition, each computing to a :class:`WrittenPart`, in partition order.
    """
    make_folder(folder, storage_options)
    return [
        dask.delayed(write_part)(part, part_path(folder, i), storage_options)
        for i, part in enumerate(ddf.to_delayed())
    ]


def _read_checked(
    path: str,
    storage_options: dict[str, Any] | None,
    columns: list[str] | None = None,
    rows: int | None = None,
) -> pd.DataFrame:
    """Read one Parquet file whole, checking its rows against its footer (and ``rows``,
    what its writer reported), naming the file when they differ or a page is corrupt."""
    fs, fs_path = fsspec.core.url_to_fs(path, **(storage_options or {}))
    try:
        with fs.open(fs_path, "rb") as f:
            parquet = pq.ParquetFile(f)
            promised = int(parquet.metadata.num_rows)
            table = parquet.read(columns=columns, use_pandas_metadata=True)
    except AdpError:
        raise
    except Exception as exc:  # whatever the decoder raised, naming the file
        raise undecodable(path, exc) from exc
    check_rows(path, table.num_rows, promised)
    if rows is not None:
        check_rows(path, table.num_rows, rows)
    return table.to_pandas()


def read_staged(
    path: str, storage_options: dict[str, Any] | None = None, rows: int | None = None
) -> pd.DataFrame:
    """One staged file, index and every column, checked for the ``rows`` it was written
    with (and its footer's)."""
    return _read_checked(path, storage_options, rows=rows)


def read_staged_scores(
    paths: Sequence[str],
    storage_options: dict[str, Any] | None = None,
    rows: Sequence[int] | None = None,
) -> pd.Series:
    """The ``score`` column of some staged files, end to end (the threshold needs no index),
    each checked for its ``rows``."""
    values = []
    for i, path in enumerate(paths):
        expected = None if rows is None else rows[i]
        frame = _read_checked(path, storage_options, ["score"], expected)
        values.append(frame["score"].to_numpy(dtype=np.float64))
    return pd.Series(np.concatenate(values) if values else np.empty(0), name="score")


def group_files(parts: Sequence[WrittenPart], rows: int) -> list[list[str]]:
    """Consecutive files in groups of about ``rows`` rows (at least one file each).

    A group closes once it holds ``rows`` rows or more; the order of the files is kept.
    """
    groups: list[list[str]] = []
    size = rows
    for part in parts:
        if size >= rows:
            groups.append([])
            size = 0
        groups[-1].append(part.path)
        size += part.rows
    return groups


def staged_frame(
    parts: Sequence[WrittenPart],
    meta: pd.DataFrame,
    storage_options: dict[str, Any] | None = None,
) -> dd.DataFrame:
    """The staged files as a lazy frame: one partition per file, in order."""
    return dd.from_delayed(
        [dask.delayed(read_staged)(p.path, storage_options, p.rows) for p in parts],
        meta=meta,
        verify_meta=False,
    )


def staged_scores(
    parts: Sequence[WrittenPart],
    storage_options: dict[str, Any] | None = None,
    rows: int = THRESHOLD_ROWS,
) -> dd.Series:
    """The ``score`` column of the staged files, lazily, about ``rows`` scores a partition.

    Each task reads its files when computed and holds nothing afterwards, so a threshold
    computed pass by pass reads them again at every pass and worker memory stays flat.
    """
    counts = {p.path: p.rows for p in parts}
    return dd.from_delayed(
        [
            dask.delayed(read_staged_scores)(g, storage_options, [counts[f] for f in g])
            for g in group_files(parts, rows)
        ],
        meta=pd.Series(np.empty(0), name="score"),
        verify_meta=False,
    )


__all__ = [
    "THRESHOLD_ROWS",
    "WrittenPart",
    "group_files",
    "inspect_and_write",
    "make_folder",
    "part_path",
    "read_staged",
    "read_staged_scores",
    "staged_frame",
    "staged_scores",
    "write_part",
    "write_partitions",
]

"""Partition files: one Parquet file per partition, written on a worker and read back.

Every partition is written as one file with a fixed name (``part.00003.parquet``), so a
task retried after a worker died rewrites the same file: a folder holds every row once.
Staged files are read back lazily, one task per file (:func:`staged_frame`), or, for the
score column alone, one task per group of about :data:`THRESHOLD_ROWS` scores
(:func:`staged_scores`): a score is 8 bytes against a whole row of features, and the
threshold's graph and scheduling grow with its partitions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict
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
from adp.io.s3 import S3_PROTOCOLS, use_bounded_s3
from adp.paths import protocol_of


def _url_to_fs(path: str, **storage_options: Any) -> tuple[Any, str]:
    """``fsspec.core.url_to_fs``, with ADP's bounded S3 file system on S3 (workers too:
    a dead endpoint fails in seconds, see :func:`adp.io.s3.use_bounded_s3`)."""
    if protocol_of(path) in S3_PROTOCOLS:
        use_bounded_s3()
    fs, fs_path = fsspec.core.url_to_fs(path, **storage_options)
    return fs, str(fs_path)


#: Rows of staged scores per task of the threshold passes (8 bytes each).
THRESHOLD_ROWS = 1_000_000


def write_part(
    part: pd.DataFrame,
    path: str,
    storage_options: dict[str, Any] | None = None,
    stamp: str | None = None,
) -> WrittenPart:
    """Write one partition as a Parquet file (index kept) and describe it, with the
    SHA-256 of the bytes written.

    With ``stamp`` (what the file's content depends on: the fitted model and the source),
    a record ``<file>.json`` is written after the file, so a resumed job can reuse it
    (:func:`reusable_parts`).
    """
    table = pa.Table.from_pandas(part, preserve_index=True)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    fs, fs_path = _url_to_fs(path, **(storage_options or {}))
    with fs.open(fs_path, "wb") as f:
        f.write(data)
    anomalies = int(part["is_anomaly"].sum()) if "is_anomaly" in part.columns else None
    written = WrittenPart(path, len(part), len(data), anomalies, hashlib.sha256(data).hexdigest())
    if stamp is not None:
        record = {**asdict(written), "stamp": stamp}
        fs.pipe_file(f"{fs_path}.json", json.dumps(record).encode())
    return written


def verified_part(
    path: str, stamp: str, storage_options: dict[str, Any] | None = None
) -> WrittenPart | None:
    """The staged file at ``path`` when its record says it was written for ``stamp`` and
    its bytes still hash to the recorded SHA-256; None when it must be computed again."""
    fs, fs_path = _url_to_fs(path, **(storage_options or {}))
    try:
        record = json.loads(fs.cat_file(f"{fs_path}.json"))
        data = fs.cat_file(fs_path)
    except (FileNotFoundError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("stamp") != stamp:
        return None
    if hashlib.sha256(data).hexdigest() != record.get("sha256") or len(data) != record.get("bytes"):
        return None
    return WrittenPart(
        path, int(record["rows"]), len(data), record.get("anomalies"), record["sha256"]
    )


def reusable_parts(
    folder: str, count: int, stamp: str, storage_options: dict[str, Any] | None = None
) -> list[Delayed]:
    """Lazy checks of the ``count`` staged files in ``folder``: each computes to its
    :class:`WrittenPart` when it verifies for ``stamp`` (:func:`verified_part`), else None."""
    return [
        dask.delayed(verified_part)(part_path(folder, i), stamp, storage_options)
        for i in range(count)
    ]


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
    fs, fs_folder = _url_to_fs(folder, **(storage_options or {}))
    fs.makedirs(fs_folder, exist_ok=True)


def part_path(folder: str, number: int) -> str:
    """The file of partition ``number`` in ``folder``: ``folder/part.NNNNN.parquet``."""
    return f"{folder.rstrip('/')}/part.{number:05d}.parquet"


def write_partitions(
    ddf: dd.DataFrame,
    folder: str,
    storage_options: dict[str, Any] | None = None,
    *,
    stamp: str | None = None,
    skip: Collection[int] = (),
) -> list[Delayed]:
    """Lazy tasks that write each partition of ``ddf`` as ``folder/part.NNNNN.parquet``.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The partitions to write.
    folder : str
        Where.
    storage_options : dict, optional
        fsspec options.
    stamp : str, optional
        Record each file for reuse by a resumed job (see :func:`write_part`).
    skip : collection of int
        Partitions not to write (a resumed job's verified files).

    Returns
    -------
    list of Delayed
        One per partition not skipped, each computing to a :class:`WrittenPart`, in
        partition order.
    """
    make_folder(folder, storage_options)
    return [
        dask.delayed(write_part)(part, part_path(folder, i), storage_options, stamp)
        for i, part in enumerate(ddf.to_delayed())
        if i not in skip
    ]


def _read_checked(
    path: str,
    storage_options: dict[str, Any] | None,
    columns: list[str] | None = None,
    rows: int | None = None,
) -> pd.DataFrame:
    """Read one Parquet file whole, checking its rows against its footer (and ``rows``,
    what its writer reported), naming the file when they differ or a page is corrupt."""
    fs, fs_path = _url_to_fs(path, **(storage_options or {}))
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
    "reusable_parts",
    "staged_frame",
    "staged_scores",
    "verified_part",
    "write_part",
    "write_partitions",
]

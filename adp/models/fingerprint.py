"""Cheap fingerprints of training data, recorded with a registered model for lineage.

A fingerprint says "this is (very probably) the same data" without reading all of it:

* :func:`fingerprint_frame` for any dask DataFrame: the schema, the length of every
  partition, and a hash of a few rows from a few partitions. It reads each partition once
  for its length (one column where the format allows) and a handful of rows from at most
  ``max_partitions`` partitions.
* :func:`fingerprint_files` for lake data: the sorted paths, sizes and modification times
  (or ETags) of the files, from the file system's listing alone; no data is read.

Both return ``"<kind>-sha256:<hex>"``. They detect appends, deletions, rewrites of files,
schema changes and most edits; an edit of a row that is never sampled, keeping every
partition's length, escapes :func:`fingerprint_frame` (use :func:`fingerprint_files`,
which sees the file's new size or time).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import dask
import dask.dataframe as dd
import fsspec
import numpy as np
import pandas as pd

from adp.errors import AdpError, ConfigError, SourceError


def _length(part: pd.DataFrame) -> int:
    return len(part)


def _rows_digest(part: pd.DataFrame, rows: int) -> str:
    n = len(part)
    if n == 0:
        return "empty"
    positions = np.unique(np.linspace(0, n - 1, num=min(rows, n)).round().astype(int))
    picked = part.iloc[positions]
    hashed = pd.util.hash_pandas_object(picked, index=True).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def fingerprint_frame(ddf: dd.DataFrame, rows: int = 8, max_partitions: int = 16) -> str:
    """Fingerprint a dask DataFrame: schema + partition lengths + a hash of sampled rows.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
    rows : int
        Rows hashed per sampled partition (evenly spaced within it).
    max_partitions : int
        Partitions whose rows are hashed (evenly spaced over the frame).

    Returns
    -------
    str
        ``"frame-sha256:<64 hex digits>"``.
    """
    schema = [[str(c), str(t)] for c, t in ddf.dtypes.items()]
    probe = ddf[list(ddf.columns[:1])] if len(ddf.columns) else ddf
    lengths = [dask.delayed(_length)(p) for p in probe.to_delayed()]
    n = ddf.npartitions
    chosen = sorted(set(np.linspace(0, n - 1, num=min(max_partitions, n)).round().astype(int)))
    parts = ddf.to_delayed()
    digests = [dask.delayed(_rows_digest)(parts[i], rows) for i in chosen]
    computed_lengths, computed_digests = dask.compute(lengths, digests)
    payload = {
        "schema": schema,
        "index": str(ddf.index.dtype),
        "lengths": [int(x) for x in computed_lengths],
        "rows": dict(zip((int(i) for i in chosen), computed_digests, strict=True)),
    }
    return "frame-sha256:" + _digest(payload)


def _file_stamp(info: dict[str, Any]) -> str:
    for key in ("mtime", "LastModified", "last_modified", "ETag", "etag", "created"):
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    return ""


def fingerprint_files(uri: str, storage_options: dict[str, Any] | None = None) -> str:
    """Fingerprint a file, folder or glob of a lake from its listing: paths, sizes, times.

    Parameters
    ----------
    uri : str
        A local path or fsspec URL (``s3://bucket/lake/``), as given to :func:`adp.read`.
    storage_options : dict, optional
        fsspec options for remote stores.

    Returns
    -------
    str
        ``"files-sha256:<64 hex digits>"``.

    Raises
    ------
    adp.errors.SourceError
        When nothing exists at ``uri``.
    """
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if any(ch in path for ch in "*?["):
        names = fs.glob(path)
    elif fs.isdir(path):
        names = fs.find(path)
    elif fs.exists(path):
        names = [path]
    else:
        raise SourceError(f"cannot fingerprint {uri!r}: nothing exists there")
    entries = []
    for name in sorted(names):
        info = fs.info(name)
        if info.get("type") == "directory":
            continue
        entries.append([name, int(info.get("size") or 0), _file_stamp(info)])
    if not entries:
        raise SourceError(f"cannot fingerprint {uri!r}: it holds no files")
    return "files-sha256:" + _digest({"files": entries})


def fingerprint_source(
    uri: str, ddf: dd.DataFrame | None = None, storage_options: dict[str, Any] | None = None
) -> str:
    """The fingerprint of a job's source: from its file listing when ``uri`` names files,
    else (SQL tables and other sources) from the frame itself.

    Raises
    ------
    adp.errors.SourceError
        When ``uri`` names files that cannot be listed and no ``ddf`` is given.
    adp.errors.ConfigError
        When ``uri`` names no files and no ``ddf`` is given.
    """
    from adp.paths import protocol_of

    if protocol_of(uri) in ("file", "local", "s3", "gs", "gcs", "abfs", "az", "memory"):
        try:
            return fingerprint_files(uri, storage_options)
        except (OSError, ValueError) as exc:
            if ddf is None:
                if isinstance(exc, AdpError):
                    raise
                raise SourceError(f"cannot fingerprint {uri!r}: {exc}") from exc
    if ddf is None:
        raise ConfigError(
            f"cannot fingerprint {uri!r} without its data frame: it names no files; pass "
            "the frame read from it as ddf="
        )
    return fingerprint_frame(ddf)


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


__all__ = ["fingerprint_files", "fingerprint_frame", "fingerprint_source"]

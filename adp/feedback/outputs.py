"""Scored outputs as the review queue reads them: the rows a job wrote, lazily, and what
its manifest says about them.

A job's output folder (:mod:`adp.io.sinks`) holds Parquet files of the key columns,
``score``, ``is_anomaly`` and, with explanations, ``top_features``, and
``_adp_manifest.json`` naming the files, the detector, its features, the threshold and the
source. :func:`open_output` reads exactly the files the manifest names; a frame already in
hand (``detector.detect(ddf, key=[...])``) becomes one with :func:`scored_frame`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.dataframe as dd

from adp.errors import DataError, SourceError, bounded
from adp.io.outputs import manifest_paths, read_manifest

#: The columns a job writes besides the key.
RESULT_COLUMNS = ("score", "is_anomaly", "top_features")


@dataclass(frozen=True)
class ScoredOutput:
    """The scored rows of one output.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
        Lazy: the key columns, ``score``, ``is_anomaly`` and maybe ``top_features``.
    key : list of str
        The key columns (every column that is not a result column).
    threshold : float or None
        The global threshold the rows were flagged at.
    uri : str or None
        Where the output is.
    manifest : dict
        The output's manifest (empty for a frame in hand).
    """

    frame: dd.DataFrame
    key: list[str]
    threshold: float | None
    uri: str | None = None
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """The features the output was scored on, as the manifest records them."""
        return list(self.manifest.get("features") or [])

    @property
    def source(self) -> str | None:
        """The source the output was scored from (as recorded: passwords hidden)."""
        value = self.manifest.get("source")
        return str(value) if value else None


def _key_columns(columns: Sequence[str], where: str) -> list[str]:
    if "score" not in columns:
        raise DataError(
            f"{where} has no 'score' column (columns: {bounded(columns)}): review a scored "
            "output, as a job writes it"
        )
    key = [c for c in columns if c not in RESULT_COLUMNS]
    if not key:
        raise DataError(
            f"{where} has no key columns, so labels could not find its rows again: score "
            "with a key (job spec source.key, or detect(ddf, key=[...]))"
        )
    return key


def scored_frame(
    frame: dd.DataFrame, threshold: float | None = None, key: Sequence[str] | None = None
) -> ScoredOutput:
    """A scored frame in hand as a :class:`ScoredOutput`.

    Parameters
    ----------
    frame : dask.dataframe.DataFrame
        Key columns, ``score`` and optionally ``is_anomaly`` and ``top_features``
        (``detector.detect(ddf, key=[...])``).
    threshold : float, optional
        The threshold it was flagged at (``uncertain`` needs it).
    key : sequence of str, optional
        The key columns; default every column that is not a result column.
    """
    columns = list(frame.columns)
    found = _key_columns(columns, "the scored frame")
    chosen = list(key) if key is not None else found
    absent = [c for c in chosen if c not in columns]
    if absent:
        raise DataError(f"key columns {absent} are not in the scored frame ({bounded(columns)})")
    return ScoredOutput(frame, chosen, threshold)


def open_output(uri: str, storage_options: dict[str, Any] | None = None) -> ScoredOutput:
    """Open a job's output folder lazily, with its manifest.

    Parameters
    ----------
    uri : str
        The output folder (local or ``s3://...``).
    storage_options : dict, optional
        fsspec options for a remote store.

    Raises
    ------
    adp.errors.SourceError
        When ``uri`` holds no ADP manifest (not a job's committed output).
    adp.errors.DataError
        When its files have no ``score`` or no key column.
    """
    read = read_manifest(uri, storage_options)  # read once: files and features agree
    files = (
        None
        if read is None or "files" not in read
        else [f"{uri.rstrip('/')}/{p}" for p in manifest_paths(read)]
    )
    manifest = read or {}
    if files is None:
        raise SourceError(
            f"{uri!r} is not a scored output: it has no _adp_manifest.json; give the output "
            "folder of a job (its output.uri)"
        )
    if not files:
        raise DataError(f"the output {uri!r} holds no rows")
    frame = dd.read_parquet(files, storage_options=storage_options)
    key = _key_columns(list(frame.columns), f"the output {uri!r}")
    threshold = manifest.get("threshold")
    return ScoredOutput(
        frame,
        key,
        float(threshold) if isinstance(threshold, int | float) else None,
        uri,
        manifest,
    )


__all__ = ["RESULT_COLUMNS", "ScoredOutput", "open_output", "scored_frame"]

"""The one opening of a job's source, shared by score jobs and search jobs.

A job spec's ``source`` section says where the data is (read with :func:`adp.io.read.read`)
and which columns play which part: ``features`` (default every numeric column that is not
excluded), ``exclude``, ``key`` (carried into every output row) and the columns the job
itself needs besides the features (the truth column of ``evaluate``, the label of a
search), which are never features and are carried along. The opened frame holds the
features and the carried columns only, with its partitioning pinned once for every stage.

The missing-value policy (``source.missing``) is not applied here: it is the detector's
fitted state (:meth:`adp.Detector.fit` takes ``missing=``), so a registered model fills
new data with its fit-time medians.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dask.dataframe as dd

from adp.context.spec import Context
from adp.detect.features import resolve_features
from adp.errors import DataError, bounded
from adp.io.read import read
from adp.io.s3 import with_timeouts
from adp.jobs.spec import SourceSpec


@dataclass(frozen=True)
class OpenedSource:
    """A job's source, read lazily.

    Attributes
    ----------
    frame : dask.dataframe.DataFrame
        The feature columns, then the carried columns; partitions pinned.
    features : list of str
        The feature columns, in order.
    key : list of str
        The source key (``source.key``).
    carry : list of str
        Columns carried into the results: the key, then the job's other columns.
    """

    frame: dd.DataFrame
    features: list[str]
    key: list[str]
    carry: list[str]


def pin_partitions(ddf: dd.DataFrame) -> dd.DataFrame:
    """Fix the partitioning of ``ddf`` once for every stage of a job.

    dask fuses Parquet partitions according to the columns a later step reads, so two
    projections of one frame can have different partitions. Built from the frame's own
    tasks, the pinned frame has one partitioning that every stage (sample, score, explain)
    shares, and staged scores align with the source partition by partition.
    """
    divisions = ddf.divisions if ddf.known_divisions else None
    return dd.from_delayed(ddf.to_delayed(), meta=ddf._meta, divisions=divisions, verify_meta=False)


def open_source(
    source: SourceSpec, extra: Sequence[str | None] = (), context: Context | None = None
) -> OpenedSource:
    """Read ``source`` lazily and resolve its feature columns.

    Parameters
    ----------
    source : adp.jobs.spec.SourceSpec
        The spec's source section.
    extra : sequence of str
        Columns the job needs besides the features (truth, kind, label); never features,
        always carried. None entries are skipped.
    context : Context, optional
        The job's context: the categorical and text columns it encodes are features too
        (:func:`adp.detect.features.resolve_features`).

    Returns
    -------
    OpenedSource

    Raises
    ------
    adp.errors.DataError
        When a named column (feature, key or ``extra``) is not in the data, or no numeric
        feature is left.
    """
    ddf = read(
        source.uri,
        format=source.format,
        columns=source.columns,
        storage_options=with_timeouts(source.uri, source.storage_options),
        **source.options,
    )
    others = [col for col in dict.fromkeys(extra) if col]
    absent = [col for col in others if col not in ddf.columns]
    if absent:
        raise DataError(
            f"columns {bounded(absent)} named by the job spec (evaluate or search label) are "
            f"not in {source.uri!r}; its columns are {bounded(ddf.columns)}"
        )
    features = resolve_features(
        ddf, source.features, exclude=[*source.exclude, *others], key=source.key, context=context
    )
    carry = list(dict.fromkeys([*source.key, *others]))
    frame = pin_partitions(ddf[list(dict.fromkeys([*features, *carry]))])
    return OpenedSource(frame, features, list(source.key), carry)


__all__ = ["OpenedSource", "open_source", "pin_partitions"]

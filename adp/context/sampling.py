"""The fit sample of the encoders: a uniform random sample of at most ``rows`` rows,
drawn in one pass and the same whatever the partitioning.

Each row gets a 64-bit hash of its index and values
(:func:`pandas.util.hash_pandas_object`); the sample is the ``rows`` rows with the
smallest hashes (a bottom-k sample). Each partition keeps its own bottom ``rows``, and
groups of partitions' candidates are merged in a tree on the cluster, so no task holds more
than a few times ``rows`` rows and only the sample reaches the client. A row is in the
sample or not by its own hash, never by which partition it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.graphs import tree_reduce

__all__ = ["sample_rows"]

#: Candidate sets merged per task of the tree.
FAN_IN = 8


def _bottom(part: pd.DataFrame, rows: int) -> tuple[pd.DataFrame, np.ndarray]:
    hashes = np.asarray(pd.util.hash_pandas_object(part, index=True).to_numpy(), dtype=np.uint64)
    keep = np.argsort(hashes, kind="stable")[:rows]
    return part.iloc[keep], hashes[keep]


def _merge(
    candidates: Sequence[tuple[pd.DataFrame, np.ndarray]], rows: int
) -> tuple[pd.DataFrame, np.ndarray]:
    frame = pd.concat([c[0] for c in candidates])
    hashes = np.concatenate([c[1] for c in candidates])
    keep = np.argsort(hashes, kind="stable")[:rows]
    return frame.iloc[keep], hashes[keep]


def _frame(candidates: tuple[pd.DataFrame, np.ndarray]) -> pd.DataFrame:
    return candidates[0]


def sample_rows(ddf: dd.DataFrame, columns: Sequence[str], rows: int) -> Delayed:
    """A lazy pandas frame: the ``columns`` of at most ``rows`` rows of ``ddf``, a uniform
    random sample chosen by hash (every row when there are fewer).

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data.
    columns : sequence of str
        The columns to keep.
    rows : int
        The sample's size (at least 1).
    """
    rows = max(1, int(rows))
    level = [dask.delayed(_bottom)(p, rows) for p in ddf[list(columns)].to_delayed()]
    merged = tree_reduce(level, partial(_merge, rows=rows), split_every=FAN_IN)
    return dask.delayed(_frame)(merged)

"""Small frames stay interactive: one small in-memory partition is fitted and scored in
this process, not on the cluster.

A notebook user with a table of a few thousand rows would otherwise wait for a cluster
round trip per step (graph to the scheduler, model to a worker, results back): a few tenths
of a second, for work PyOD does in milliseconds. When a frame is *one partition* built from
data already in this process (``dd.from_pandas``, ``dd.from_array``) with at most
:data:`LOCAL_MAX_CELLS` cells, known without reading it, ADP computes the very same graph
with dask's synchronous scheduler instead. Same partition functions, same seeds, same order
of work: the scores, threshold and flags equal the cluster's exactly. Only where the work
runs changes (so no worker reports its metrics for it).

Frames read from storage (Parquet, SQL, ...) always go to the cluster: this process may not
be able to read them, and reading them is the cluster's job.
"""

from __future__ import annotations

import dask.dataframe as dd

from adp.detect.sampling import known_lengths

__all__ = ["LOCAL_MAX_CELLS", "runs_locally", "scheduler_for"]

LOCAL_MAX_CELLS = 1_000_000
"""Most cells (rows x columns) of a frame computed in this process (8 MB of float64)."""


def _in_memory(ddf: dd.DataFrame) -> bool:
    """Whether every input of ``ddf``'s expression is data held in this process."""
    from dask.dataframe.dask_expr.io.io import IO, FromArray, FromPandas

    return all(
        isinstance(node, FromPandas | FromArray) for node in ddf.expr.walk() if isinstance(node, IO)
    )


def runs_locally(ddf: dd.DataFrame, max_cells: int = LOCAL_MAX_CELLS) -> bool:
    """Whether ``ddf`` is small enough to fit and score in this process.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The frame a verb is about to compute on.
    max_cells : int
        Limit on rows x columns.

    Returns
    -------
    bool
        ``True`` for one partition of in-memory data whose length is known without
        computing and whose cells are at most ``max_cells``.
    """
    if ddf.npartitions != 1:
        return False
    try:
        if not _in_memory(ddf):
            return False
    except ImportError:  # pragma: no cover - dask without query planning
        return False
    lengths = known_lengths(ddf, 1)
    return lengths is not None and lengths[0] * max(1, len(ddf.columns)) <= max_cells


def scheduler_for(ddf: dd.DataFrame) -> str | None:
    """``"sync"`` when :func:`runs_locally` (a ``scheduler=`` for ``compute``), else
    ``None`` (dask's default: the cluster)."""
    return "sync" if runs_locally(ddf) else None

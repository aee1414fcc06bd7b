"""Dask graph shapes that keep building a graph linear in its partitions.

A per-partition task that depends on a *reduction* (a global statistic computed from every
partition) merges the reduction's graph into its own. Built as a tree of ``dask.delayed``
calls, that graph has one layer per call, and every one of the ``n`` per-partition tasks
copies all ``n`` layers again when it is built: quadratic in the partitions. 10,000
partitions exhausted 24 GB this way. :func:`flat_delayed` gives the reduction one layer,
which every dependent task shares by reference.
"""

from __future__ import annotations

from typing import Any

from dask.delayed import Delayed

__all__ = ["flat_delayed"]


def flat_delayed(value: Any) -> Any:
    """``value`` as a Delayed with one graph layer; any other value as it is.

    Parameters
    ----------
    value : Delayed or object
        Typically a reduction over every partition that per-partition tasks depend on.

    Returns
    -------
    Delayed or object
        The same key and tasks, in one flat layer.
    """
    if not isinstance(value, Delayed):
        return value
    return Delayed(value.key, dict(value.__dask_graph__()))

"""Dask graph shapes that keep building a graph linear in its partitions.

A per-partition task that depends on a *reduction* (a global statistic computed from every
partition) merges the reduction's graph into its own. Built as a tree of ``dask.delayed``
calls, that graph has one layer per call, and every one of the ``n`` per-partition tasks
copies all ``n`` layers again when it is built: quadratic in the partitions. 10,000
partitions exhausted 24 GB this way. :func:`flat_delayed` gives the reduction one layer,
which every dependent task shares by reference. :func:`tree_reduce` builds the reduction
itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask.delayed import Delayed

__all__ = ["flat_delayed", "tree_reduce"]


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


def _combine_args(combine: Callable[[Sequence[Any]], Any], *items: Any) -> Any:
    return combine(items)


def tree_reduce(
    items: Sequence[Any], combine: Callable[[Sequence[Any]], Any], split_every: int = 16
) -> Delayed:
    """``combine`` of ``items`` (Delayed objects or values), reduced in a tree, lazily.

    Parameters
    ----------
    items : sequence
        At least one item; typically one Delayed per partition.
    combine : callable
        Takes a sequence of up to ``split_every`` items (or of its own results) and returns
        one of the same kind.
    split_every : int, default 16
        Items combined per task.

    Returns
    -------
    Delayed
        The combined result (one item is returned as it is, wrapped if not Delayed).

    Notes
    -----
    Items go to each task as separate arguments: a list argument of Delayed objects makes
    dask rebuild and cull the whole graph at every node, quadratic in the partitions (about
    20x slower to build at 400 partitions).
    """
    if split_every < 2:
        raise ValueError(f"split_every must be at least 2, got {split_every}")
    level = list(items)
    while len(level) > 1:
        level = [
            dask.delayed(_combine_args)(combine, *level[i : i + split_every])
            for i in range(0, len(level), split_every)
        ]
    if isinstance(level[0], Delayed):
        return level[0]
    return dask.delayed(_combine_args)(combine, *level)

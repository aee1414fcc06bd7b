"""Uniform random samples of a partitioned dataset, drawn on the workers."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.errors import ConfigError, DataError


def draw(part: pd.DataFrame, count: int, seed: np.random.SeedSequence) -> pd.DataFrame:
    """``count`` rows of ``part`` drawn without replacement (in their order), or all of it."""
    if count >= len(part):
        return part
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(part), size=count, replace=False))
    return part.iloc[rows]


def partition_lengths(parts: list[Delayed]) -> list[int]:
    """Rows in each of ``parts`` (a collection's ``to_delayed()``), counted on the workers.

    The lengths are taken from the very tasks the sample is drawn from: dask may fuse
    Parquet partitions differently when fewer columns are read, so a count over another
    projection of the same frame could disagree with the sampled partitions.
    """
    return [int(n) for n in dask.compute(*[dask.delayed(len)(p) for p in parts])]


def known_lengths(ddf: dd.DataFrame, n_partitions: int) -> list[int] | None:
    """Partition lengths from the source's metadata (Parquet footers), without reading data.

    ``None`` when dask cannot tell them without computing (CSV, JSON, SQL, computed frames)
    or when they do not describe ``n_partitions`` partitions (dask fused Parquet files into
    fewer partitions for a narrow projection); the caller then counts the rows.
    """
    try:
        from dask.dataframe.dask_expr._expr import Lengths, Literal
    except ImportError:  # pragma: no cover - dask without query planning
        return None
    try:
        expr = Lengths(ddf.expr).optimize()
    except Exception:  # noqa: BLE001 - any planner failure means "count the rows"
        return None
    if not isinstance(expr, Literal) or len(expr.value) != n_partitions:
        return None
    return [int(n) for n in expr.value]


def sample_counts(lengths: list[int], sample_rows: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Rows to draw from each partition of ``lengths`` rows for a uniform sample of at most
    ``sample_rows`` rows (multivariate hypergeometric; every row when there are fewer)."""
    size = min(sample_rows, sum(lengths))
    if size == sum(lengths):
        return np.asarray(lengths)
    return np.random.default_rng(seed).multivariate_hypergeometric(np.asarray(lengths), size)


def plan_sample(
    ddf: dd.DataFrame,
    sample_rows: int,
    random_state: int | None = None,
    *,
    lengths_from: dd.DataFrame | None = None,
) -> tuple[list[Delayed], list[int], int, int]:
    """Plan a uniform random sample without replacement of at most ``sample_rows`` rows.

    The number of rows drawn from each partition follows the multivariate hypergeometric
    distribution over the partition lengths, so every row of the dataset has the same
    chance of being drawn whatever the partitioning; the draws then run on the workers.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The dataset (already reduced to the columns the sample needs).
    sample_rows : int
        Upper bound on the sample size; every row is taken when there are fewer.
    random_state : int, optional
        Seed; the same seed and partitioning give the same sample.
    lengths_from : dask.dataframe.DataFrame, optional
        A frame with the same partition lengths as ``ddf`` whose metadata may tell them
        without reading data (``ddf`` before a row-preserving ``map_partitions``, such as a
        missing-value check); default ``ddf``.

    Returns
    -------
    parts : list of Delayed
        One lazy pandas DataFrame per partition that contributes rows, in partition order.
    counts : list of int
        Rows each of ``parts`` will hold.
    size : int
        Rows in the sample.
    total : int
        Rows in the dataset.
    """
    if sample_rows < 1:
        raise ConfigError(f"sample_rows must be at least 1, got {sample_rows!r}")
    partitions = ddf.to_delayed()
    lengths = known_lengths(
        ddf if lengths_from is None else lengths_from, len(partitions)
    ) or partition_lengths(partitions)
    total = sum(lengths)
    if total == 0:
        raise DataError("the dataset has no rows: nothing to fit on")
    seed = np.random.SeedSequence(random_state)
    size = min(sample_rows, total)
    counts = sample_counts(lengths, sample_rows, seed)
    children = seed.spawn(len(lengths))
    chosen = [
        (dask.delayed(draw)(part, int(count), child), int(count))
        for part, count, child in zip(partitions, counts, children, strict=True)
        if count > 0
    ]
    return [c[0] for c in chosen], [c[1] for c in chosen], int(size), int(total)


def uniform_sample(
    ddf: dd.DataFrame, sample_rows: int, random_state: int | None = None
) -> tuple[list[Delayed], int, int]:
    """Like :func:`plan_sample`, without the per-part row counts."""
    parts, _, size, total = plan_sample(ddf, sample_rows, random_state)
    return parts, size, total

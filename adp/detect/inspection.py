"""Look at every partition in the pass that draws the fit sample, instead of in a pass of its
own.

A job profiles its source (rows, nulls, constant columns: :mod:`adp.io.profile`) and may have
to pass a quality gate before the model is fitted. Done separately, the profile is one more
read of the whole source before the sample's read. An :class:`Inspection` handed to
:meth:`adp.detect.base.BaseDetector.fit` runs on each partition *as read*, in the same task
that draws the partition's sample rows, and is concluded (the gate) before the model is
fitted:

- when the partition lengths are known without reading (Parquet footers) and the
  missing-value policy keeps every row (``fail``, ``impute_median``): **one read** for the
  inspection and the sample;
- otherwise (CSV, SQL, ``drop``): the pass that counts the rows inspects them too, then
  the sample's pass: two reads where there were three.

The sample is drawn from the partitions of the frame as given, with the same per-partition
draws as :func:`adp.detect.sampling.plan_sample`: the same sample, and model, as without the
inspection. Where dask splits the feature columns alone into other partitions (it may fuse
Parquet files when fewer columns are read: :func:`same_partitions`), the inspection runs in a
pass of its own instead, so that a job's model never depends on whether it is profiled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.detect.sampling import draw, known_lengths, plan_sample, sample_counts
from adp.errors import ConfigError, DataError
from adp.io.validate import MissingPolicy, policy_partition

__all__ = [
    "Inspection",
    "inspect_apart",
    "plan_inspected_sample",
    "same_partitions",
    "sample_inspecting",
]


@dataclass(frozen=True)
class Inspection:
    """Work on every partition of the data as read, concluded before the fit.

    Parameters
    ----------
    summarise : callable
        ``summarise(partition) -> summary``, run on each pandas partition of the frame
        given to ``fit`` (all its columns), on the workers. Summaries should be small: they
        come back to the client.
    conclude : callable
        ``conclude(summaries)``, called in the client with every partition's summary, in
        partition order, before the model is fitted; raising stops the fit.
    """

    summarise: Callable[[pd.DataFrame], Any]
    conclude: Callable[[list[Any]], None]


def inspect_apart(ddf: dd.DataFrame, inspection: Inspection) -> None:
    """Run ``inspection`` in a pass of its own over ``ddf`` and conclude it."""
    tasks = [dask.delayed(inspection.summarise)(part) for part in ddf.to_delayed()]
    inspection.conclude(list(dask.compute(*tasks)))


def same_partitions(ddf: dd.DataFrame, prepared: dd.DataFrame) -> bool:
    """Whether ``prepared`` (the feature columns of ``ddf`` under the missing-value policy,
    what :func:`adp.detect.sampling.plan_sample` samples) has ``ddf``'s partitions.

    Dask may fuse Parquet files into fewer partitions when fewer columns are read (it shows
    in the optimised expression of a frame computed from the projection); the sample drawn
    from ``ddf``'s partitions would then differ from the one drawn from ``prepared``, and a
    job's model would depend on whether it is profiled.
    """
    return bool(ddf.optimize().npartitions == prepared.optimize().npartitions)


PreparePartition = Callable[[pd.DataFrame, int], pd.DataFrame]
"""``prepare(raw_partition, number)``: the feature columns under the missing-value policy."""


def _summarise_and_count(
    part: pd.DataFrame, number: int, summarise: Callable[[pd.DataFrame], Any], prepare: Any
) -> tuple[Any, int, DataError | None]:
    summary = summarise(part)
    try:
        return summary, len(prepare(part, number)), None
    except DataError as exc:  # the gate speaks first, then this error: as in two passes
        return summary, 0, exc


def _summarise_and_take(
    part: pd.DataFrame,
    number: int,
    count: int,
    seed: np.random.SeedSequence,
    summarise: Callable[[pd.DataFrame], Any],
    prepare: Any,
) -> tuple[Any, pd.DataFrame | None, DataError | None]:
    summary = summarise(part)
    try:
        return summary, draw(prepare(part, number), count, seed), None
    except DataError as exc:
        return summary, None, exc


def _take_prepared(
    part: pd.DataFrame, number: int, count: int, seed: np.random.SeedSequence, prepare: Any
) -> pd.DataFrame:
    return draw(prepare(part, number), count, seed)


def _sample_of(result: tuple[Any, ...]) -> Any:
    return result[1]


def _without_sample(result: tuple[Any, ...]) -> tuple[Any, None, DataError | None]:
    return result[0], None, result[2]


def _settle(held: Any) -> None:
    """On a distributed client, return once the scheduler holds the persisted ``held``.

    The scheduler handles graph submissions concurrently, so a graph sent right after the
    one that persisted a key may be checked first and find no task for it ("lost
    dependencies": the race :func:`adp.detect.shipping.model_ref` waits out too).
    """
    from distributed import futures_of, wait

    futures = futures_of(held)
    if futures:
        with futures[0].client.as_current():  # wait() asks the default client
            wait(futures)


def _conclude(inspection: Inspection, results: list[tuple[Any, Any, DataError | None]]) -> None:
    inspection.conclude([r[0] for r in results])
    for _, _, error in results:
        if error is not None:
            raise error


def plan_inspected_sample(
    ddf: dd.DataFrame,
    prepare: PreparePartition,
    sample_rows: int,
    random_state: int | None,
    inspection: Inspection,
    *,
    keeps_rows: bool,
    scheduler: Any = None,
) -> tuple[list[Delayed], list[int], int, int]:
    """Inspect every partition of ``ddf`` and plan a uniform sample of its prepared rows, in
    as few reads as the source allows; ``inspection`` is concluded before this returns.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The data as given to ``fit``.
    prepare : callable
        ``prepare(partition, number)``: the partition's feature columns after the
        missing-value policy (raises :class:`~adp.errors.DataError` for ``fail``).
    sample_rows : int
        Upper bound on the sample size.
    random_state : int, optional
        Seed, used as :func:`adp.detect.sampling.plan_sample` uses it.
    inspection : Inspection
        What to run on every partition and conclude.
    keeps_rows : bool
        Whether ``prepare`` keeps every row (then metadata lengths are the sample's).
    scheduler : optional
        Dask scheduler to compute on (default: the current one).

    Returns
    -------
    parts, counts, size, total
        As :func:`adp.detect.sampling.plan_sample`: the sample's parts are already held
        in memory by the scheduler (a Delayed on each).
    """
    if sample_rows < 1:
        raise ConfigError(f"sample_rows must be at least 1, got {sample_rows!r}")
    partitions = ddf.to_delayed()
    seed = np.random.SeedSequence(random_state)
    children = seed.spawn(len(partitions))
    lengths = known_lengths(ddf, len(partitions)) if keeps_rows else None
    if lengths is None:
        counted = [
            dask.delayed(_summarise_and_count)(part, i, inspection.summarise, prepare)
            for i, part in enumerate(partitions)
        ]
        results = list(dask.compute(*counted, scheduler=scheduler))
        _conclude(inspection, results)
        lengths = [r[1] for r in results]
        if sum(lengths) == 0:
            raise DataError("the dataset has no rows: nothing to fit on")
        counts = sample_counts(lengths, sample_rows, seed)
        parts = [
            dask.delayed(_take_prepared)(part, i, int(n), child, prepare)
            for i, (part, n, child) in enumerate(zip(partitions, counts, children, strict=True))
            if n > 0
        ]
    else:
        if sum(lengths) == 0:
            raise DataError("the dataset has no rows: nothing to fit on")
        counts = sample_counts(lengths, sample_rows, seed)
        pairs = [
            dask.delayed(_summarise_and_take)(part, i, int(n), child, inspection.summarise, prepare)
            for i, (part, n, child) in enumerate(zip(partitions, counts, children, strict=True))
        ]
        held = dask.persist(*pairs, scheduler=scheduler)
        _settle(held)
        # the summaries (and any policy error) come back; the sample rows stay where drawn
        heads = [dask.delayed(_without_sample)(result) for result in held]
        _conclude(inspection, list(dask.compute(*heads, scheduler=scheduler)))
        parts = [
            dask.delayed(_sample_of)(result) for result, n in zip(held, counts, strict=True) if n
        ]
    kept = [int(n) for n in counts if n > 0]
    return parts, kept, int(sum(kept)), int(sum(lengths))


def sample_inspecting(
    ddf: dd.DataFrame,
    prepared: dd.DataFrame,
    features: Sequence[str],
    missing: MissingPolicy,
    medians: Mapping[str, float] | None,
    sample_rows: int,
    random_state: int | None,
    inspection: Inspection,
    *,
    scheduler: Any = None,
) -> tuple[list[Delayed], list[int], int, int]:
    """The fit's sample of ``prepared`` (``ddf``'s ``features`` under the ``missing``
    policy, with ``medians``), planned with ``inspection`` run on ``ddf`` in the same
    pass where the partitions allow (:func:`same_partitions`), apart and first otherwise.

    Returns
    -------
    parts, counts, size, total
        As :func:`adp.detect.sampling.plan_sample`.
    """
    if not same_partitions(ddf, prepared):
        inspect_apart(ddf, inspection)
        lengths_from = None if missing == "drop" else ddf[list(features)]
        return plan_sample(prepared, sample_rows, random_state, lengths_from=lengths_from)
    prepare = functools.partial(
        policy_partition, features=list(features), policy=missing, medians=medians
    )
    return plan_inspected_sample(
        ddf,
        prepare,
        sample_rows,
        random_state,
        inspection,
        keeps_rows=missing != "drop",
        scheduler=scheduler,
    )

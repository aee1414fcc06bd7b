"""Scores back onto arrays: ``adp.to_xarray`` maps a scored frame's columns onto the
coordinates of the netCDF or zarr dataset it was read from (see :mod:`adp.io.arrays`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.errors import DataError
from adp.io.arrays import INDEX, Layout, layout_of, open_dataset


def _block(
    part: pd.DataFrame, start: int, stop: int, n_other: int, columns: list[str]
) -> dict[str, np.ndarray]:
    size = (stop - start) * n_other
    positions = np.asarray(part.index, dtype=np.int64) - start * n_other
    inside = (positions >= 0) & (positions < size)
    out = {}
    for name in columns:
        if part[name].dtype == bool:
            values = np.zeros(size, dtype=bool)
        else:
            values = np.full(size, np.nan, dtype=np.float64)
        values[positions[inside]] = part[name].to_numpy()[inside]
        out[name] = values
    return out


def to_xarray(
    scored: dd.DataFrame,
    like: Any,
    *,
    columns: Sequence[str] | None = None,
    variables: Sequence[str] | None = None,
    time_dim: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Any:
    """Map a scored frame back onto the coordinates of the array dataset it came from.

    Parameters
    ----------
    scored : dask.dataframe.DataFrame
        The output of scoring a frame from :func:`read_array`: its ``row`` index is kept.
    like : xarray.Dataset or str
        The original dataset, or its URI (opened lazily, coordinates only).
    columns : sequence of str, optional
        Columns to map; default ``score`` and ``is_anomaly`` (those present).
    variables, time_dim : optional
        As given to :func:`read_array`, when they were given there.
    storage_options : dict, optional
        For a remote ``like``.

    Returns
    -------
    xarray.Dataset
        One DataArray per column on the dimensions ``(time, *others)`` with the original
        coordinates. Lazy dask arrays, one block per partition, when ``scored`` kept the
        known divisions of :func:`~adp.io.arrays.read_array`; otherwise (for example scores
        read back from Parquet) the columns are gathered once and placed by position.
        Cells without a scored row (the start of a window, dropped rows) are NaN, or
        False for flags.

    Raises
    ------
    adp.errors.DataError
        When ``scored`` has lost its positional ``row`` index, or lacks the columns.
    """
    import xarray as xr

    ds = like
    if isinstance(like, str):
        ds = open_dataset(like, storage_options=storage_options)
    layout = layout_of(ds, variables, time_dim)
    wanted = (
        list(columns) if columns else [c for c in ("score", "is_anomaly") if c in scored.columns]
    )
    missing = [c for c in wanted if c not in scored.columns]
    if missing or not wanted:
        raise DataError(
            f"columns {missing or wanted} are not in the scored frame: {list(scored.columns)}"
        )
    if scored.index.name != INDEX:
        raise DataError(
            f"to_xarray needs the scored frame's {INDEX!r} index from read_array (its index "
            f"is {scored.index.name!r}): do not reset_index between reading and scoring"
        )
    coords = {d: ds[d] for d in layout.dims if d in ds.coords}
    if _aligned(scored, layout):
        data = _lazy_blocks(scored, layout, wanted)
    else:
        data = _gathered(scored, layout, wanted)
    arrays = {name: xr.DataArray(data[name], dims=layout.dims, coords=coords) for name in wanted}
    return xr.Dataset(arrays)


def _aligned(scored: dd.DataFrame, layout: Layout) -> bool:
    """Whether every partition starts at a time step (known divisions, multiples of n)."""
    if not scored.known_divisions:
        return False
    return not any(int(d) % layout.n_other for d in scored.divisions[:-1])


def _dtype(scored: dd.DataFrame, name: str) -> Any:
    return bool if scored[name].dtype == bool else np.float64


def _lazy_blocks(scored: dd.DataFrame, layout: Layout, wanted: list[str]) -> dict[str, Any]:
    n_other = layout.n_other
    starts = [int(d) // n_other for d in scored.divisions[:-1]] + [layout.shape[0]]
    blocks: dict[str, list[Any]] = {c: [] for c in wanted}
    for part, start, stop in zip(scored[wanted].to_delayed(), starts[:-1], starts[1:], strict=True):
        built = dask.delayed(_block, pure=True)(part, start, stop, n_other, wanted)
        for name in wanted:
            shape = (stop - start, *layout.shape[1:])
            flat = da.from_delayed(
                built[name], shape=((stop - start) * n_other,), dtype=_dtype(scored, name)
            )
            blocks[name].append(flat.reshape(shape))
    return {name: da.concatenate(blocks[name], axis=0) for name in wanted}


def _gathered(scored: dd.DataFrame, layout: Layout, wanted: list[str]) -> dict[str, Any]:
    # Partitions of unknown extent (a scored frame read back from Parquet): bring the
    # mapped columns to the client once and place each row by its position.
    frame = scored[wanted].compute()
    placed = _block(frame, 0, layout.shape[0], layout.n_other, wanted)
    return {name: values.reshape(layout.shape) for name, values in placed.items()}

"""N-D sensor arrays (netCDF and zarr, local or on S3) as feature frames, and scores back
onto the arrays' coordinates.

A dataset's variables share a time dimension and any number of other dimensions (sensors,
or latitude and longitude). :func:`read_array` opens it lazily with dask chunks to learn
its layout, then reads one time chunk per partition *on the workers*: one row per time step
and position along the other dimensions, the data variables as features, the coordinates
as columns, and a positional index (``row = t * n_other + s``) with known divisions.

With ``window=w``, each variable also gets lag features ``<var>_lag1`` ... ``<var>_lag{w-1}``
(its values 1 .. w-1 steps earlier at the same position), so a detector sees a sliding window
over time; the first ``w - 1`` time steps, which lack a full window, are left out.

:func:`adp.io.arrays_out.to_xarray` maps a scored frame's ``score`` and ``is_anomaly`` back
onto the original coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.errors import ConfigError, DataError, SourceError
from adp.io.s3 import remote_errors
from adp.paths import check_allowed, check_storage_options, is_local, local_path

ArrayFormat = Literal["netcdf", "zarr"]
ARRAY_FORMATS: tuple[str, ...] = ("netcdf", "zarr")
_SUFFIXES: dict[str, ArrayFormat] = {
    ".nc": "netcdf",
    ".nc4": "netcdf",
    ".netcdf": "netcdf",
    ".zarr": "zarr",
}
INDEX = "row"


def array_format(uri: str) -> ArrayFormat | None:
    """``"netcdf"`` or ``"zarr"`` from the name's suffix, else None."""
    lowered = str(uri).lower().rstrip("/")
    for suffix, fmt in _SUFFIXES.items():
        if lowered.endswith(suffix):
            return fmt
    return None


def open_dataset(
    uri: str,
    format: ArrayFormat | None = None,
    *,
    chunks: Any = None,
    storage_options: dict[str, Any] | None = None,
    lazy: bool = True,
) -> Any:
    """Open a netCDF file or zarr store as an :class:`xarray.Dataset`.

    With ``lazy=True`` the variables are dask arrays (``chunks``, default the store's own
    chunks); with ``lazy=False`` they are read on access (used inside partition tasks).
    """
    import xarray as xr

    fmt = format or array_format(uri)
    if fmt not in ARRAY_FORMATS:
        raise ConfigError(
            f"cannot tell the array format of {uri!r}: pass format='netcdf' or 'zarr'"
        )
    dask_chunks = (chunks if chunks is not None else {}) if lazy else None
    with remote_errors(uri, storage_options, "open"):
        try:
            if fmt == "zarr":
                return xr.open_zarr(
                    uri, storage_options=storage_options or None, chunks=dask_chunks
                )
            if not is_local(uri):
                # netCDF-4 is HDF5: h5netcdf reads it through an fsspec file object, which
                # each worker opens for itself (partition tasks open with lazy=False).
                import fsspec

                handle = fsspec.open(uri, "rb", **(storage_options or {})).open()
                return xr.open_dataset(handle, engine="h5netcdf", chunks=dask_chunks)
            return xr.open_dataset(local_path(uri), engine="netcdf4", chunks=dask_chunks)
        except (FileNotFoundError, KeyError) as exc:
            raise SourceError(f"cannot open {fmt} data at {uri!r}: {exc}") from None
        except OSError as exc:
            if not is_local(uri):
                raise
            raise SourceError(f"cannot open {fmt} data at {uri!r}: {exc}") from None
        except ValueError as exc:
            raise SourceError(f"{uri!r} is not readable as {fmt}: {exc}") from None


@dataclass(frozen=True)
class Layout:
    """How an array dataset maps onto rows: ``row = t * n_other + s``."""

    variables: list[str]
    time_dim: str
    other_dims: list[str]
    shape: tuple[int, ...]
    time_chunks: tuple[int, ...]

    @property
    def dims(self) -> list[str]:
        return [self.time_dim, *self.other_dims]

    @property
    def n_other(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1


def layout_of(
    ds: Any, variables: Sequence[str] | None = None, time_dim: str | None = None
) -> Layout:
    """The layout of ``ds``: which variables, the time dimension, the other dimensions.

    Raises
    ------
    adp.errors.DataError
        An unknown variable, a variable without the time dimension, or variables whose
        dimensions differ (naming them).
    """
    names = list(variables) if variables else [str(v) for v in ds.data_vars]
    if not names:
        raise DataError("the dataset has no data variables to use as features")
    unknown = [v for v in names if v not in ds.data_vars]
    if unknown:
        raise DataError(
            f"variables {unknown} are not in the dataset; its variables are {list(ds.data_vars)}"
        )
    if not variables:  # by default: the variables with the most dimensions
        most = max(len(ds[v].dims) for v in names)
        names = [v for v in names if len(ds[v].dims) == most]
    first = ds[names[0]]
    dims = [str(d) for d in first.dims]
    if time_dim is None:
        time_dim = "time" if "time" in dims else dims[0]
    for name in names:
        if time_dim not in ds[name].dims:
            raise DataError(f"variable {name!r} has no {time_dim!r} dimension: {ds[name].dims}")
        if set(ds[name].dims) != set(dims):
            raise DataError(
                f"variables must share their dimensions: {names[0]!r} has {tuple(dims)}, "
                f"{name!r} has {ds[name].dims}; choose variables=[...] that match"
            )
    others = [d for d in dims if d != time_dim]
    shape = (int(ds.sizes[time_dim]), *[int(ds.sizes[d]) for d in others])
    chunks = first.chunks
    time_chunks = (
        tuple(int(c) for c in chunks[first.dims.index(time_dim)]) if chunks else (shape[0],)
    )
    return Layout(names, time_dim, others, shape, time_chunks)


def _coordinate(ds: Any, dim: str) -> np.ndarray:
    if dim in ds.coords:
        return np.asarray(ds[dim].values)
    return np.arange(ds.sizes[dim], dtype=np.int64)


def _frame(
    ds: Any, layout: Layout, start: int, stop: int, window: int, columns: list[str] | None
) -> pd.DataFrame:
    first = max(start, window - 1)
    read_from = max(0, first - (window - 1))
    sub = ds[layout.variables].isel({layout.time_dim: slice(read_from, stop)})
    sub = sub.transpose(*layout.dims).load()
    n_other = layout.n_other
    rows = max(0, stop - first)
    offset = first - read_from
    data: dict[str, Any] = {}
    times = _coordinate(sub, layout.time_dim)[offset:]
    data[layout.time_dim] = np.repeat(times, n_other)
    if layout.other_dims:
        grids = np.meshgrid(*[_coordinate(ds, d) for d in layout.other_dims], indexing="ij")
        for dim, grid in zip(layout.other_dims, grids, strict=True):
            data[dim] = np.tile(grid.reshape(-1), rows)
    for name in layout.variables:
        values = np.asarray(sub[name].values).reshape(-1, n_other)
        data[name] = values[offset:].reshape(-1)
        for lag in range(1, window):
            data[f"{name}_lag{lag}"] = values[offset - lag : offset - lag + rows].reshape(-1)
    index = pd.RangeIndex(first * n_other, stop * n_other, name=INDEX)
    frame = pd.DataFrame(data, index=index)
    return frame if columns is None else frame[list(columns)]


def _meta(ds: Any, layout: Layout, window: int) -> pd.DataFrame:
    columns: dict[str, pd.Series] = {}
    for dim in layout.dims:
        dtype = ds[dim].dtype if dim in ds.coords else np.dtype(np.int64)
        columns[dim] = pd.Series(np.empty(0, dtype=dtype))
    for name in layout.variables:
        dtype = ds[name].dtype
        if not np.issubdtype(dtype, np.floating):
            dtype = np.dtype(np.float64)
        columns[name] = pd.Series(np.empty(0, dtype=dtype))
        for lag in range(1, window):
            columns[f"{name}_lag{lag}"] = pd.Series(np.empty(0, dtype=dtype))
    return pd.DataFrame(columns, index=pd.RangeIndex(0, 0, name=INDEX))


def _read_block(
    block: tuple[int, int],
    uri: str,
    fmt: ArrayFormat,
    storage_options: dict[str, Any] | None,
    layout: Layout,
    window: int,
    meta: pd.DataFrame,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    start, stop = block
    try:
        ds = open_dataset(uri, fmt, storage_options=storage_options, lazy=False)
        frame = _frame(ds, layout, start, stop, window, columns)
    except (OSError, ValueError, KeyError) as exc:
        raise SourceError(f"cannot read time steps {start}..{stop - 1} of {uri!r}: {exc}") from None
    wanted = meta if columns is None else meta[list(columns)]
    return frame.astype(wanted.dtypes.to_dict(), copy=False)


def read_array(
    uri: str,
    format: ArrayFormat | None = None,
    *,
    variables: Sequence[str] | None = None,
    time_dim: str | None = None,
    chunks: Any = None,
    window: int | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dd.DataFrame:
    """Open a netCDF file or zarr store as a feature frame, lazily.

    Parameters
    ----------
    uri : str
        A ``.nc`` file (local) or a ``.zarr`` store (local or ``s3://``).
    format : {"netcdf", "zarr"}, optional
        Inferred from the suffix when omitted.
    variables : sequence of str, optional
        Data variables to use as features; default those with the most dimensions.
    time_dim : str, optional
        The time dimension; default ``"time"`` when present, else the first dimension.
    chunks : int or dict, optional
        Dask chunks to open with (``{"time": 1000}``); default the store's own chunks. One
        partition per time chunk.
    window : int, optional
        Add ``<var>_lag1`` .. ``<var>_lag{window-1}`` features (sliding windows over time);
        the first ``window - 1`` time steps are left out.
    storage_options : dict, optional
        fsspec options for zarr on a remote store.

    Returns
    -------
    dask.dataframe.DataFrame
        Index ``row`` (``t * n_other + s``, known divisions); columns: the dimensions'
        coordinates, then the variables (and their lags). Use the dimension columns as the
        job's ``key`` so that :func:`to_xarray` can map scores back.
    """
    check_allowed(uri)
    check_storage_options(storage_options)
    fmt = format or array_format(uri)
    if fmt not in ARRAY_FORMATS:
        raise ConfigError(
            f"cannot tell the array format of {uri!r}: pass format='netcdf' or 'zarr'"
        )
    if window is not None and int(window) < 1:
        raise ConfigError(f"window must be at least 1 time step, got {window}")
    window = int(window or 1)
    ds = open_dataset(uri, fmt, chunks=chunks, storage_options=storage_options)
    layout = layout_of(ds, variables, time_dim)
    if layout.shape[0] == 0 or layout.n_other == 0:
        raise DataError(f"{uri!r} is empty: its shape is {layout.shape} over {layout.dims}")
    if window > layout.shape[0]:
        raise ConfigError(
            f"window={window} is longer than the {layout.shape[0]} time steps of {uri!r}"
        )
    meta = _meta(ds, layout, window)
    edges = np.concatenate([[0], np.cumsum(layout.time_chunks)]).astype(int).tolist()
    blocks = [(edges[i], edges[i + 1]) for i in range(len(edges) - 1)]
    n_other = layout.n_other
    divisions = [a * n_other for a, _ in blocks] + [layout.shape[0] * n_other - 1]
    return dd.from_map(
        _read_block,
        blocks,
        args=[uri, fmt, storage_options, layout, window, meta],
        meta=meta,
        divisions=divisions,
        label="adp-read-array",
        enforce_metadata=False,
    )

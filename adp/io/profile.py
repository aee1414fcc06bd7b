"""``adp.profile``: a dataset's quality in one parallel pass.

Each partition is summarised on a worker (rows; per column: nulls, non-finite values,
smallest and largest value or a couple of distinct values); the client merges the small
summaries. For a Parquet source, the files' footers are also compared (schemas only,
no data read) to report schema differences between files.

The quality score
-----------------
:attr:`DataProfile.quality` condenses the profile into one number in [0, 1] (the service's
data-quality gate compares it with ``policy.quality.min_score``). It is the product of
four components, each one minus the share of the data hit by one kind of defect::

    completeness = 1 - missing cells / cells           (cells = rows x columns)
    finiteness   = 1 - non-finite cells / cells        (+inf and -inf; NaN is missing)
    variability  = 1 - constant columns / columns
    consistency  = 1 - (files whose schema differs from the first readable file's
                        + unreadable files) / files    (1 when no files were compared)
    score        = completeness * finiteness * variability * consistency

A product rather than a weighted mean: it needs no weights to choose, a clean dataset
(and only a clean one) scores 1, a dataset wholly failing one check (every column
constant, every file unreadable) scores 0 however good it is otherwise, and independent
defects compound: 10% missing cells and a quarter of the columns constant give
0.9 x 0.75 = 0.675. A dataset without rows or columns has completeness 0: there is
nothing to use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed

from adp.io.footers import footer_tasks, schema_differences


@dataclass(frozen=True)
class ColumnProfile:
    """Quality figures of one column."""

    name: str
    dtype: str
    nulls: int
    non_finite: int
    constant: bool
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class QualityScore:
    """A dataset's quality in [0, 1] and its four components (see the module docstring).

    Attributes
    ----------
    score : float
        ``completeness * finiteness * variability * consistency``.
    completeness : float
        One minus the share of missing (null or NaN) cells.
    finiteness : float
        One minus the share of infinite cells.
    variability : float
        One minus the share of constant columns.
    consistency : float
        One minus the share of files that differ from the first file's schema or cannot
        be read; 1 when no files were compared.
    """

    score: float
    completeness: float
    finiteness: float
    variability: float
    consistency: float

    def render(self) -> str:
        """One line: the score and its components."""
        return (
            f"quality {self.score:.3f} (completeness {self.completeness:.3f}, finiteness "
            f"{self.finiteness:.3f}, variability {self.variability:.3f}, consistency "
            f"{self.consistency:.3f})"
        )


def _kept(bad: int, total: int) -> float:
    """``1 - bad / total``, within [0, 1]."""
    return min(1.0, max(0.0, 1.0 - bad / total))


@dataclass(frozen=True)
class DataProfile:
    """The profile of a dataset; see :func:`profile`.

    Attributes
    ----------
    rows : int
        Rows in the dataset.
    partitions : int
        Partitions scanned.
    empty_partitions : list of int
        Numbers of the partitions without rows.
    columns : list of ColumnProfile
        One per column, in order.
    files : int
        Parquet files whose footers were compared (0 when no source was given).
    schema_differences : list of str
        One line per file whose schema differs from the first file's.
    unreadable_files : dict
        File -> error, for files whose footer could not be read.
    """

    rows: int
    partitions: int
    empty_partitions: list[int]
    columns: list[ColumnProfile]
    files: int = 0
    schema_differences: list[str] = field(default_factory=list)
    unreadable_files: dict[str, str] = field(default_factory=dict)

    @property
    def constant_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.constant]

    @property
    def quality(self) -> QualityScore:
        """The quality score in [0, 1] and its components.

        ``score = completeness * finiteness * variability * consistency``, where
        completeness is one minus the share of missing cells, finiteness one minus the
        share of infinite cells, variability one minus the share of constant columns and
        consistency one minus the share of files with a differing schema or that cannot
        be read (the module docstring says why a product). A dataset without rows or
        columns scores 0.
        """
        cells = self.rows * len(self.columns)
        if cells == 0:
            completeness = finiteness = 0.0
        else:
            completeness = _kept(sum(c.nulls for c in self.columns), cells)
            finiteness = _kept(sum(c.non_finite for c in self.columns), cells)
        variability = _kept(len(self.constant_columns), len(self.columns) or 1)
        broken = len(self.schema_differences) + len(self.unreadable_files)
        consistency = _kept(broken, self.files) if self.files else 1.0
        return QualityScore(
            score=completeness * finiteness * variability * consistency,
            completeness=completeness,
            finiteness=finiteness,
            variability=variability,
            consistency=consistency,
        )

    @property
    def dtypes(self) -> dict[str, str]:
        return {c.name: c.dtype for c in self.columns}

    def column(self, name: str) -> ColumnProfile:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dictionary (for the job summary)."""
        out = asdict(self)
        out["constant_columns"] = self.constant_columns
        out["quality"] = asdict(self.quality)
        return out

    def render(self) -> str:
        """A short plain-text rendering, one line per column with a problem."""
        lines = [
            f"{self.rows} rows in {self.partitions} partitions"
            + (f" ({len(self.empty_partitions)} empty)" if self.empty_partitions else "")
            + f", {len(self.columns)} columns",
            self.quality.render(),
        ]
        for c in self.columns:
            problems = []
            if c.nulls:
                problems.append(f"{c.nulls} nulls")
            if c.non_finite:
                problems.append(f"{c.non_finite} non-finite")
            if c.constant:
                problems.append("constant")
            if c.nulls == self.rows and self.rows:
                problems.append("all missing")
            if problems:
                lines.append(f"  {c.name} ({c.dtype}): " + ", ".join(problems))
        if self.files:
            lines.append(f"  {self.files} files, {len(self.schema_differences)} schema differences")
        lines.extend(f"  schema: {d}" for d in self.schema_differences[:5])
        lines.extend(f"  unreadable: {p}: {e}" for p, e in list(self.unreadable_files.items())[:5])
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def summarise_partition(part: pd.DataFrame) -> dict[str, Any]:
    """One partition's share of a :class:`DataProfile` (rows, and per column: nulls,
    non-finite values, range or two distinct values); merged by :func:`profile_from`."""
    columns = {}
    for name in part.columns:
        series = part[name]
        nulls = int(series.isna().sum())
        entry: dict[str, Any] = {"nulls": nulls, "non_finite": 0, "min": None, "max": None}
        if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
            series.dtype
        ):
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            entry["non_finite"] = int(np.isinf(values).sum())
            finite = values[np.isfinite(values)]
            if finite.size:
                entry["min"], entry["max"] = float(finite.min()), float(finite.max())
        else:
            distinct = series.dropna().drop_duplicates().head(2).tolist()
            entry["distinct"] = distinct
        columns[str(name)] = entry
    return {"rows": len(part), "columns": columns}


def _merge(
    meta: pd.DataFrame, summaries: list[dict[str, Any]]
) -> tuple[int, list[int], list[ColumnProfile]]:
    rows = sum(s["rows"] for s in summaries)
    empty = [i for i, s in enumerate(summaries) if s["rows"] == 0]
    profiles = []
    for name in meta.columns:
        entries = [s["columns"][str(name)] for s in summaries if s["rows"]]
        nulls = sum(e["nulls"] for e in entries)
        non_finite = sum(e["non_finite"] for e in entries)
        lows = [e["min"] for e in entries if e["min"] is not None]
        highs = [e["max"] for e in entries if e["max"] is not None]
        low = min(lows) if lows else None
        high = max(highs) if highs else None
        if any("distinct" in e for e in entries):
            seen: list[Any] = []
            for e in entries:
                for value in e.get("distinct", []):
                    if value not in seen:
                        seen.append(value)
            constant = len(seen) <= 1 and rows > 0
        else:
            constant = rows > 0 and (low is None or (low == high and not non_finite))
        profiles.append(
            ColumnProfile(str(name), str(meta.dtypes[name]), nulls, non_finite, constant, low, high)
        )
    return rows, empty, profiles


def profile(
    ddf: dd.DataFrame,
    *,
    source: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DataProfile:
    """Profile ``ddf`` in one parallel pass: rows, nulls, non-finite values, constant
    columns, dtypes and (for a Parquet ``source``) schema differences between files.

    Parameters
    ----------
    ddf : dask.dataframe.DataFrame
        The dataset, as read.
    source : str, optional
        The Parquet dataset ``ddf`` was read from; its files' footers are compared.
    storage_options : dict, optional
        fsspec options for a remote ``source``.

    Returns
    -------
    DataProfile
        With ``to_dict()`` for the job summary and ``render()`` for people.
    """
    tasks = [dask.delayed(summarise_partition)(part) for part in ddf.to_delayed()]
    batches = _footer_batches(source, storage_options)
    results = dask.compute(*tasks, *batches)  # one pass: partitions and footers together
    footers = [footer for batch in results[len(tasks) :] for footer in batch]
    return _assemble(ddf._meta, list(results[: len(tasks)]), footers)


def profile_from(
    meta: pd.DataFrame,
    summaries: list[dict[str, Any]],
    *,
    source: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> DataProfile:
    """The :class:`DataProfile` of partitions already summarised by
    :func:`summarise_partition` (in another pass over the data, such as the fit sample's:
    :class:`adp.detect.inspection.Inspection`); a Parquet ``source``'s footers are read here.

    Parameters
    ----------
    meta : pandas.DataFrame
        The frame's empty meta (its columns and dtypes).
    summaries : list of dict
        One per partition, in order.
    source, storage_options
        As for :func:`profile`.
    """
    batches = _footer_batches(source, storage_options)
    footers = [footer for batch in dask.compute(*batches) for footer in batch]
    return _assemble(meta, summaries, footers)


def _footer_batches(source: str | None, storage_options: dict[str, Any] | None) -> list[Delayed]:
    if source is None:
        return []
    from adp.io.lake import data_files, infer_format
    from adp.io.read import source_kind

    if source_kind(source) != "lake" or infer_format(source, storage_options) != "parquet":
        return []
    import fsspec

    fs, _ = fsspec.core.url_to_fs(source, **(storage_options or {}))
    return footer_tasks(fs, data_files(source, storage_options))


def _assemble(
    meta: pd.DataFrame, summaries: list[dict[str, Any]], footers: list[Any]
) -> DataProfile:
    rows, empty, columns = _merge(meta, summaries)
    return DataProfile(
        rows=rows,
        partitions=len(summaries),
        empty_partitions=empty,
        columns=columns,
        files=len(footers),
        schema_differences=[d.describe() for d in schema_differences(footers)],
        unreadable_files={f.path: f.error for f in footers if f.error is not None},
    )

"""dask's Parquet reader, with every data file checked for the rows its footer promised.

:class:`CheckedArrowEngine` is dask's pyarrow engine (hive partitions, column pruning,
row-group statistics and everything else it does) with one change: each file, or set of
row groups, a partition reads is decoded whole, its rows compared with its footer's
``num_rows``, and only then are row filters applied. A file whose pages cannot be decoded,
or decode to fewer rows than promised, stops the read with a
:class:`~adp.errors.DataError` naming it: rows never vanish silently.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as pa_ds
from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine, _filters_to_expression

from adp.errors import AdpError
from adp.io.footers import check_rows, promised_rows, undecodable


class CheckedArrowEngine(ArrowDatasetEngine):
    """dask's pyarrow Parquet engine, checking decoded rows against each file's footer.

    Pass it as ``engine=`` to :func:`dask.dataframe.read_parquet`.
    """

    @classmethod
    def _read_table(
        cls,
        path_or_frag: Any,
        fs: Any,
        row_groups: list[int | None],
        columns: Any,
        schema: Any,
        filters: Any,
        partitions: Any,
        partition_keys: Any,
        **kwargs: Any,
    ) -> pa.Table:
        if isinstance(path_or_frag, pa_ds.ParquetFileFragment):
            path = str(path_or_frag.path)
        else:
            path = str(path_or_frag)
        groups = None if row_groups == [None] else [int(g) for g in row_groups if g is not None]
        extra = []
        if filters and columns is not None and schema is not None:
            extra = [n for n in _filter_columns(filters) if n not in columns and n in schema.names]
        try:
            table = super()._read_table(
                path_or_frag,
                fs,
                row_groups,
                None if columns is None else [*columns, *extra],
                schema,
                None,  # filtered below, after the rows are counted
                partitions,
                partition_keys,
                **kwargs,
            )
            promised = promised_rows(fs, path, groups)
        except AdpError:
            raise
        except Exception as exc:  # whatever the decoder raised, naming the file
            raise undecodable(path, exc) from exc
        check_rows(path, table.num_rows, promised)
        if filters:
            table = table.filter(_filters_to_expression(filters))
        return table.drop_columns(extra) if extra else table


def _filter_columns(filters: Any) -> list[str]:
    """The column names ``filters`` (a list of tuples, or of lists of tuples) test."""
    names: list[str] = []
    for item in filters:
        for predicate in item if isinstance(item, list) else [item]:
            if predicate[0] not in names:
                names.append(str(predicate[0]))
    return names


__all__ = ["CheckedArrowEngine"]

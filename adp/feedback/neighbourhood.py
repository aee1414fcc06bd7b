"""A row's neighbourhood in time-keyed data: the rows just before and after it for the same
entity, as an analyst wants to see them beside the row under review.

An output is *time-keyed* when one of its key columns holds timestamps (or ``time=`` names
one); the other key columns name the entity (``sensor_id``). For each row under review
:func:`neighbourhoods` finds, in one pass over the output, its entity's ``before`` rows
just earlier and ``after`` rows just later: every partition keeps at most that many per
row, so only a few rows per partition reach the client, which keeps the nearest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from adp.errors import ConfigError, bounded
from adp.feedback.keys import KEY_COLUMN, key_texts
from adp.feedback.outputs import ScoredOutput

#: The column of a neighbourhood row naming the reviewed row (its key text) it belongs to.
TARGET = "target"
#: The column of a neighbourhood row giving its place: -k .. -1 before, 0 the row, 1 .. k after.
OFFSET = "offset"
#: The most rows on each side a neighbourhood may ask for.
MAX_SIDE = 50


def time_column(scored: ScoredOutput, time: str | None = None) -> str | None:
    """The key column that orders ``scored``'s rows in time, or None when it is not
    time-keyed.

    Parameters
    ----------
    scored : ScoredOutput
    time : str, optional
        The column to use; default the one key column holding timestamps (None when there
        is no such column, or more than one).

    Raises
    ------
    adp.errors.ConfigError
        When ``time`` is not a key column of the output.
    """
    if time is not None:
        if time not in scored.key:
            raise ConfigError(
                f"time column {time!r} is not a key column of the output (key: "
                f"{bounded(scored.key)})"
            )
        return time
    dtypes = scored.frame.dtypes
    found = [c for c in scored.key if pd.api.types.is_datetime64_any_dtype(dtypes[c])]
    return found[0] if len(found) == 1 else None


def _side(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{name} must be a whole number of rows, got {value!r}")
    if not 0 <= value <= MAX_SIDE:
        raise ConfigError(f"{name} must be between 0 and {MAX_SIDE} rows, got {value}")
    return int(value)


def _near(
    part: pd.DataFrame,
    targets: pd.DataFrame,
    entity: list[str],
    time: str,
    before: int,
    after: int,
) -> pd.DataFrame:
    """The rows of one partition near each target: at most ``before`` earlier, the row
    itself and ``after`` later, for the target's entity."""
    pieces = []
    for _, target in targets.iterrows():
        mask = np.ones(len(part), dtype=bool)
        for column in entity:
            mask &= (part[column] == target[column]).to_numpy(dtype=bool, na_value=False)
        rows = part[mask]
        moment = target[time]
        times = rows[time]
        near = pd.concat(
            [
                rows[times < moment].nlargest(before, time) if before else rows.iloc[:0],
                rows[times == moment],
                rows[times > moment].nsmallest(after, time) if after else rows.iloc[:0],
            ]
        )
        pieces.append(near.assign(**{TARGET: target[KEY_COLUMN]}))
    if not pieces:
        return part.iloc[:0].assign(**{TARGET: pd.Series([], dtype=object)})
    return pd.concat(pieces)


def neighbourhoods(
    scored: ScoredOutput,
    rows: pd.DataFrame,
    *,
    before: int = 3,
    after: int = 3,
    time: str | None = None,
) -> dict[str, pd.DataFrame]:
    """Each reviewed row's neighbourhood in the output, by its key text.

    Parameters
    ----------
    scored : ScoredOutput
        The output the rows were chosen from.
    rows : pandas.DataFrame
        Rows with :data:`~adp.feedback.keys.KEY_COLUMN` and the key columns (what
        :func:`adp.feedback.review.next_rows` returns).
    before, after : int
        Rows to show on each side (0 to :data:`MAX_SIDE`).
    time : str, optional
        The key column ordering rows in time (default: :func:`time_column`).

    Returns
    -------
    dict of str to pandas.DataFrame
        Empty when the output is not time-keyed. Otherwise, for each row's key text, the
        output's rows of the same entity in time order (the key columns, ``score``,
        ``is_anomaly``, maybe ``top_features``), with :data:`OFFSET` (0 for the row itself)
        and :data:`~adp.feedback.keys.KEY_COLUMN`.

    Raises
    ------
    adp.errors.ConfigError
        For a bad ``before``/``after``, or a ``time`` that is not a key column.
    """
    before, after = _side(before, "before"), _side(after, "after")
    column = time_column(scored, time)
    if column is None or rows.empty:
        return {}
    absent = [c for c in [KEY_COLUMN, *scored.key] if c not in rows.columns]
    if absent:
        raise ConfigError(f"the reviewed rows lack columns {absent}: give next_rows' rows")
    entity = [c for c in scored.key if c != column]
    targets = rows[[KEY_COLUMN, *scored.key]].drop_duplicates(KEY_COLUMN).reset_index(drop=True)
    meta = scored.frame._meta.assign(**{TARGET: pd.Series([], dtype=object)})
    found: pd.DataFrame = scored.frame.map_partitions(
        _near, targets, entity, column, before, after, meta=meta
    ).compute()
    return {
        str(key): _nearest(found[found[TARGET] == key], key, column, before, after, scored.key)
        for key in targets[KEY_COLUMN]
    }


def _nearest(
    found: pd.DataFrame, key: str, time: str, before: int, after: int, columns: Sequence[str]
) -> pd.DataFrame:
    """The candidates of one row cut to the nearest ``before`` and ``after``, in time order."""
    found = found.drop(columns=TARGET).sort_values(time, kind="stable")
    texts = key_texts(found, list(columns))
    here = (texts == key).to_numpy()
    if not here.any():
        return found.iloc[:0].assign(**{OFFSET: pd.Series([], dtype=np.int64), KEY_COLUMN: ""})
    at = int(np.flatnonzero(here)[0])
    start, stop = max(0, at - before), min(len(found), at + after + 1)
    out = found.iloc[start:stop].copy()
    out.insert(0, KEY_COLUMN, texts.iloc[start:stop].to_numpy())
    out[OFFSET] = np.arange(start - at, stop - at, dtype=np.int64)
    return out.reset_index(drop=True)


__all__ = ["MAX_SIDE", "OFFSET", "TARGET", "neighbourhoods", "time_column"]

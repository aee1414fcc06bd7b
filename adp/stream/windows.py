"""Per-key windows: rolling features of each key's recent events, computed in the stream.

A stream spec's ``window`` section::

    window:
      by: [sensor]                      # events of one sensor share a window
      size: 100                         # the window holds the key's last 100 events
      slide: 100                        # its statistics refresh every 100 events (tumbling)
      columns: [temp, vibration]        # event fields the features are computed on
      features: [mean, std, diff_from_mean]

adds the features ``temp_mean``, ``temp_std``, ``temp_diff_from_mean``, ... to every event
before it is scored; the model must have been fitted on data with them
(:func:`window_features` computes them for a batch frame, with this very code).

**Semantics.** A key's window holds its last ``size`` events. Its statistics (mean and
population standard deviation per column) are refreshed after each of the key's events
while it holds fewer than ``size`` (the window fills), then after every ``slide`` events:
``slide == size`` is a tumbling window (the statistics of the last complete block of
``size`` events), ``slide < size`` a sliding one (``slide: 1``: the previous ``size``
events). An event's features come from its key's statistics as they stood before it, so an
anomalous value does not dilute its own baseline: ``<column>_mean``, ``<column>_std`` and
``<column>_diff_from_mean`` (its value minus the mean). A key's first event has no earlier
events: its mean is its own value, its std and diff 0. Then the event joins the window.

**State that survives a restart, exactly once.** The windows live in the consumer's memory
and in a store (a Redis hash beside the source stream, or a table in the SQL sink's
database: :class:`RedisWindowStore`, :class:`SqlWindowStore`). Each key's state records
the id of the last event it applied, and an event joins its key's window only if its id
comes after that one (message ids grow along a stream). The runner computes a batch's
features and advances the windows when it submits the batch, keeps the states the batch
left behind for its keys, and saves them (all in one atomic write) when it commits the
batch: after every sink committed the batch's results, before the batch is acknowledged.
A consumer killed at any point therefore leaves:

- before the save: results perhaps committed, the windows as before the batch; the batch
  is delivered again, computed again from the same windows (so the features, and a result
  already committed, are the same) and applied once, by the save that now follows;
- after the save, before the acknowledgement: the batch is delivered again, but each of
  its events is at or before its key's last applied id, so none joins a window twice (its
  result, committed before the save, is kept by the idempotent sinks).

So every event joins its key's window exactly once, whatever fails and is retried, as
long as each key's events arrive in order. Run one consumer per group: by default a Redis
consumer is named after the host, and a restarted one reads its own pending events first,
in order. An event that arrives after a newer event of its key was applied (a late event,
one claimed from another consumer, a JetStream redelivery after ``ack_wait``) is scored
against the window but joins none: at most once, never twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd

from adp.errors import ConfigError, SpecError, bounded
from adp.stream.brokers.protocol import Message
from adp.stream.decode import Rows, decode_rows
from adp.stream.window_store import META, WindowStore

__all__ = [
    "WINDOW_FEATURES",
    "KeyWindow",
    "WindowShape",
    "Windows",
    "feature_names",
    "message_order",
    "window_features",
]

#: The rolling features a window can compute, per column.
WINDOW_FEATURES: tuple[str, ...] = ("mean", "std", "diff_from_mean")


def feature_names(columns: Sequence[str], features: Sequence[str]) -> list[str]:
    """The names of the window features: ``<column>_<feature>``, column by column."""
    return [f"{c}_{f}" for c in columns for f in features]


def message_order(message_id: str) -> tuple[int, ...] | str:
    """A message id as something that sorts in stream order: the integers of a Redis
    entry id (``ms-seq``), a JetStream sequence or a Kafka ``partition:offset``; other ids
    as they are."""
    parts = message_id.replace(":", "-").split("-")
    if all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return message_id


def _after(message_id: str, last: str | None) -> bool:
    if last is None:
        return True
    a, b = message_order(message_id), message_order(last)
    if type(a) is not type(b):
        return str(a) > str(b)
    return a > b  # type: ignore[operator]


class KeyWindow:
    """One key's window: its last ``size`` events' values and the statistics its events'
    features come from.

    Parameters
    ----------
    size, slide : int
        As in the spec.
    """

    __slots__ = ("count", "last", "mean", "size", "slide", "std", "values")

    def __init__(self, size: int, slide: int) -> None:
        self.size, self.slide = size, slide
        self.count = 0
        self.last: str | None = None
        self.values: deque[tuple[float, ...]] = deque(maxlen=size)
        self.mean: list[float] | None = None
        self.std: list[float] | None = None

    def features(self, row: Sequence[float], names: Sequence[str]) -> list[float]:
        """The features of an event whose column values are ``row``, from the statistics
        as they stand (``names`` from :data:`WINDOW_FEATURES`), column by column."""
        mean = self.mean if self.mean is not None else list(row)
        std = self.std if self.std is not None else [0.0] * len(row)
        out: list[float] = []
        for value, m, s in zip(row, mean, std, strict=True):
            for name in names:
                out.append(m if name == "mean" else s if name == "std" else value - m)
        return out

    def add(self, row: Sequence[float], message_id: str) -> bool:
        """Add an event to the window unless it comes at or before the last one added;
        returns whether it was added."""
        if not _after(message_id, self.last):
            return False
        self.values.append(tuple(row))
        self.count += 1
        self.last = message_id
        if self.count < self.size or (self.count - self.size) % self.slide == 0:
            block = np.asarray(self.values, dtype=np.float64)
            self.mean = block.mean(axis=0).tolist()
            self.std = block.std(axis=0).tolist()
        return True

    def dumps(self) -> bytes:
        """The state as JSON (floats in their shortest round-trip form)."""
        return orjson.dumps(
            {
                "count": self.count,
                "last": self.last,
                "values": list(self.values),
                "mean": self.mean,
                "std": self.std,
            }
        )

    @classmethod
    def loads(cls, data: bytes | str, size: int, slide: int) -> KeyWindow:
        """A state written by :meth:`dumps`."""
        state = orjson.loads(data)
        window = cls(size, slide)
        window.count, window.last = int(state["count"]), state["last"]
        window.values.extend(tuple(v) for v in state["values"])
        window.mean, window.std = state["mean"], state["std"]
        return window


@dataclass(frozen=True)
class WindowShape:
    """A window's definition (the spec's ``window`` section, store aside)."""

    by: tuple[str, ...]
    size: int
    slide: int
    columns: tuple[str, ...]
    features: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        """The window feature names."""
        return feature_names(self.columns, self.features)

    def signature(self) -> bytes:
        """What a saved state must have been made by."""
        return orjson.dumps(
            {
                "by": list(self.by),
                "size": self.size,
                "slide": self.slide,
                "columns": list(self.columns),
            }
        )


class Windows:
    """Every key's window, and the features of a batch's events.

    Parameters
    ----------
    shape : WindowShape
        The window.
    model_features : sequence of str
        The model's features, in order: the window features among them are computed, the
        others read from the events.
    impute : bool
        The model imputes missing values (its other features may be null).
    store : WindowStore, optional
        Where the windows persist; without one they live in memory only.

    Raises
    ------
    adp.errors.SpecError
        When the model lacks window features, or the store holds windows of another shape.
    """

    def __init__(
        self,
        shape: WindowShape,
        model_features: Sequence[str],
        *,
        impute: bool = False,
        store: WindowStore | None = None,
    ) -> None:
        self.shape, self.store = shape, store
        self.model_features = list(model_features)
        names = shape.names
        lacking = [n for n in names if n not in self.model_features]
        if lacking:
            raise SpecError(
                f"window: the model has no features {bounded(lacking)}: fit it on data "
                "with them (adp.stream.windows.window_features computes them), or change "
                "window.columns / window.features"
            )
        window_set = set(names)
        raw = [f for f in self.model_features if f not in window_set]
        self.fields = list(dict.fromkeys([*raw, *shape.columns]))  # decoded from events
        self.impute = impute
        self._column_at = [self.fields.index(c) for c in shape.columns]
        self._saved: dict[str, bytes] = {}
        self._keys: dict[str, KeyWindow] = {}
        if store is not None:
            self._saved = store.load()
            meta = self._saved.pop(META, None)
            if meta is not None and meta != shape.signature():
                raise SpecError(
                    f"window: the state at {store.name} was made by another window "
                    f"({bytes(meta).decode()}): use another consumer group, or delete it"
                )

    def __len__(self) -> int:
        return len(self._keys) + len(self._saved)

    def window(self, key: str) -> KeyWindow:
        """The window of ``key`` (a JSON array of its ``by`` values)."""
        found = self._keys.get(key)
        if found is None:
            saved = self._saved.pop(key, None)
            s = self.shape
            found = (
                KeyWindow.loads(saved, s.size, s.slide)
                if saved is not None
                else KeyWindow(s.size, s.slide)
            )
            self._keys[key] = found
        return found

    def apply(
        self, ids: Sequence[str], keys: Sequence[str], values: np.ndarray
    ) -> tuple[np.ndarray, dict[str, bytes]]:
        """Features of events in order, each from its key's window before it; then the
        event joins the window.

        Parameters
        ----------
        ids : sequence of str
            The events' message ids.
        keys : sequence of str
            Their window keys.
        values : ndarray
            Their values of the window's columns, ``(events, columns)``.

        Returns
        -------
        features : ndarray
            ``(events, len(shape.names))`` float64.
        states : dict
            The state each touched key was left in, to be saved when the batch commits.
        """
        names = self.shape.features
        out = np.empty((len(ids), len(self.shape.names)), dtype=np.float64)
        touched: dict[str, KeyWindow] = {}
        for i, (mid, key, row) in enumerate(zip(ids, keys, values.tolist(), strict=True)):
            window = self.window(key)
            out[i] = window.features(row, names)
            if window.add(row, mid):
                touched[key] = window
        states = {k: w.dumps() for k, w in touched.items()}
        if states:
            states[META] = self.shape.signature()
        return out, states

    def prepare(
        self, messages: Sequence[Message], key: Sequence[str]
    ) -> tuple[Rows, dict[str, bytes]]:
        """Decode a batch (on the consumer: windows depend on the order of events) and add
        the window features.

        Returns
        -------
        rows : Rows
            The model's features in its order, the ``key`` columns, and the dead letters
            (events whose window columns are not finite numbers among them).
        states : dict
            As :meth:`apply` returns.
        """
        by = list(self.shape.by)
        decode_key = list(dict.fromkeys([*key, *by]))
        decoded = decode_rows(
            [m.data for m in messages], self.fields, decode_key, impute=self.impute
        )
        dead = list(decoded.dead)
        columns = decoded.matrix[:, self._column_at]
        finite = np.isfinite(columns).all(axis=1)
        keep = np.flatnonzero(finite)
        if len(keep) < len(columns):
            for i in np.flatnonzero(~finite).tolist():
                name = self.shape.columns[int(np.flatnonzero(~np.isfinite(columns[i]))[0])]
                reason = f"window column {name!r} is not a finite number"
                dead.append((int(decoded.positions[i]), reason))
            dead.sort()
        positions = decoded.positions[keep]
        by_at = [decode_key.index(b) for b in by]
        key_values = [[decoded.keys[j][i] for i in keep.tolist()] for j in by_at]
        window_keys = [orjson.dumps(list(v)).decode() for v in zip(*key_values, strict=True)]
        ids = [messages[i].id for i in positions.tolist()]
        features, states = self.apply(ids, window_keys, columns[keep])
        window_at = {n: j for j, n in enumerate(self.shape.names)}
        field_at = {n: j for j, n in enumerate(self.fields)}
        matrix = np.empty((len(keep), len(self.model_features)), dtype=np.float64)
        for j, name in enumerate(self.model_features):
            if name in window_at:
                matrix[:, j] = features[:, window_at[name]]
            else:
                matrix[:, j] = decoded.matrix[keep, field_at[name]]
        carried = [[decoded.keys[decode_key.index(k)][i] for i in keep.tolist()] for k in key]
        return Rows(positions, matrix, carried, dead), states

    def save(self, states: Mapping[str, bytes]) -> None:
        """Persist the states a committed batch left (nothing without a store)."""
        if self.store is not None and states:
            self.store.save(states)

    def close(self) -> None:
        """Close the store."""
        if self.store is not None:
            self.store.close()


def window_features(frame: pd.DataFrame, shape: WindowShape) -> pd.DataFrame:
    """``frame`` with the window features added, its rows taken as events in order.

    The same computation as the stream's (one in-memory :class:`Windows`), for preparing
    the data a windowed stream's model is fitted on.

    Parameters
    ----------
    frame : pandas.DataFrame
        Events in stream order, with the ``by`` and ``columns`` fields.
    shape : WindowShape
        The window.

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame`` with the columns ``<column>_<feature>`` (float64).
    """
    lacking = [c for c in (*shape.by, *shape.columns) if c not in frame.columns]
    if lacking:
        raise ConfigError(f"window_features: the frame has no columns {bounded(lacking)}")
    values = frame[list(shape.columns)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ConfigError("window_features: window columns must hold finite numbers only")
    windows = Windows(shape, shape.names)
    by_rows = frame[list(shape.by)].astype(object).to_numpy().tolist()
    keys = [orjson.dumps(row).decode() for row in by_rows]
    ids = [str(i) for i in range(1, len(frame) + 1)]  # in order: every row joins its window
    features, _ = windows.apply(ids, keys, values)
    out = frame.copy()
    for j, name in enumerate(shape.names):
        out[name] = features[:, j]
    return out

"""The review queue: the next rows an analyst should label, from a scored output.

::

    from adp.feedback import next_rows
    batch = next_rows("out/scores", n=20, strategy="uncertain", model="sensors@3")

:func:`next_rows` reads the output lazily (:mod:`adp.feedback.outputs`), gives every row its
key text (:mod:`adp.feedback.keys`) and drops the rows the model's labels already cover, on
the workers, then lets a strategy (:mod:`adp.feedback.strategies`) choose. ``top``,
``uncertain`` and ``random`` need the output alone; ``disagreement`` and ``diverse`` also
need the rows' features, from the source the output was scored from (the manifest's, or
``source=``), matched to the output by key. Only the chosen rows reach the client, each
with its score, flag and ``top_features``; on request (``context=k``) with its
neighbourhood in time-keyed data (:mod:`adp.feedback.neighbourhood`: its entity's ``k``
rows before and after it), and (``values=True``) with the values of the model's features,
read from the source for the chosen rows alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from adp.detect.base import BaseDetector
from adp.detect.combine import EnsembleScorer
from adp.errors import ConfigError, DataError, DetectorError, bounded
from adp.feedback.keys import KEY_COLUMN, key_texts
from adp.feedback.outputs import ScoredOutput, open_output
from adp.feedback.strategies import (
    PRIORITY,
    check_strategy,
    filter_keys,
    kmeans_plusplus_rows,
    pick_disagreement,
    pick_random,
    pick_top,
    pick_uncertain,
    sample_keys,
)


def _keyed(part: pd.DataFrame, key: list[str], reviewed: frozenset[str]) -> pd.DataFrame:
    out = part.copy()
    out.insert(0, KEY_COLUMN, key_texts(part, key))
    if reviewed:
        out = out[~out[KEY_COLUMN].isin(reviewed)]
    return out


def with_keys(
    frame: dd.DataFrame, key: Sequence[str], reviewed: Iterable[str] = ()
) -> dd.DataFrame:
    """``frame`` with each row's key text in a first column, :data:`KEY_COLUMN`, lazily;
    rows whose key text is in ``reviewed`` left out (the set travels to the workers once).

    Raises
    ------
    adp.errors.DataError
        When a key column is not in ``frame``.
    """
    key = list(key)
    absent = [c for c in key if c not in frame.columns]
    if absent:
        raise DataError(
            f"key columns {absent} are not in the data (columns: {bounded(frame.columns)})"
        )
    meta = frame._meta.copy()
    meta.insert(0, KEY_COLUMN, pd.Series([], dtype=object))
    shipped = dask.delayed(frozenset(reviewed), pure=True)
    return frame.map_partitions(_keyed, key, shipped, meta=meta)


def _model_parts(model: str | None) -> tuple[str | None, int | str | None]:
    if model is None:
        return None, None
    from adp.models.api import parse_ref

    return parse_ref(model)


def ensemble_of(detector: BaseDetector) -> BaseDetector:
    """The detector whose scorer is an ensemble: ``detector`` itself, or the ensemble a
    detector learned from labels was built on.

    Raises
    ------
    adp.errors.DetectorError
        When neither is an ensemble.
    """
    for candidate in (detector, getattr(detector, "base", None)):
        if isinstance(candidate, BaseDetector) and isinstance(
            getattr(candidate, "scorer_", None), EnsembleScorer
        ):
            return candidate
    raise DetectorError(
        f"strategy 'disagreement' needs an ensemble; the model scores with {detector.name!r}: "
        "register an ensemble (create_detector('ensemble', detectors=[...])) or use "
        "'uncertain'"
    )


def _source_frame(
    scored: ScoredOutput,
    source: dd.DataFrame | str | None,
    columns: list[str],
    storage_options: dict[str, Any] | None,
) -> dd.DataFrame:
    """The rows' features: ``source``, or the source the manifest records."""
    if isinstance(source, dd.DataFrame):
        frame = source
    else:
        uri = source or scored.source
        if not uri:
            raise ConfigError(
                "this strategy needs the rows' features and the output records no source: "
                "give the source (--source PATH, or source=ddf)"
            )
        from adp.io.read import read

        frame = read(uri, columns=columns, storage_options=storage_options)
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(
            f"the source lacks columns {bounded(absent)} that review needs (the key and the "
            f"model's features); its columns are {bounded(frame.columns)}"
        )
    return frame[columns]


def next_rows(
    output: str | ScoredOutput,
    n: int = 20,
    strategy: str = "uncertain",
    *,
    model: str | None = None,
    detector: BaseDetector | None = None,
    store: Any = None,
    reviewed: Iterable[str] | None = None,
    source: dd.DataFrame | str | None = None,
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    context: int = 0,
    values: bool = False,
    time: str | None = None,
) -> pd.DataFrame:
    """The next ``n`` rows to label, chosen by ``strategy`` among unreviewed rows.

    Parameters
    ----------
    output : str or ScoredOutput
        A job's output folder, or :func:`~adp.feedback.outputs.scored_frame` of a frame.
    n : int
        Rows to return (fewer when fewer are left).
    strategy : {"top", "uncertain", "disagreement", "diverse", "random"}
        See :mod:`adp.feedback.strategies`.
    model : str, optional
        ``name`` or ``name@version``: rows its labels cover are skipped, and
        ``disagreement`` loads it (when ``detector`` is not given).
    detector : BaseDetector, optional
        The fitted model (``disagreement``: an ensemble, or learned from one).
    store : LabelStore, optional
        Where labels are; default the configured store (when ``model`` is given).
    reviewed : iterable of str, optional
        Key texts to skip instead of asking the store.
    source : dask.dataframe.DataFrame or str, optional
        The rows' features for ``disagreement`` and ``diverse``; default the source the
        output's manifest records.
    seed : int
        Seed of ``random`` and ``diverse``.
    storage_options : dict, optional
        fsspec options for the output (and a source read by URI).
    context : int, default 0
        For time-keyed data, add each row's ``neighbourhood``: its entity's ``context``
        rows before and after it (:func:`adp.feedback.neighbourhood.neighbourhoods`), as a
        list of records with ``offset`` (0 for the row itself); ``None`` when the output
        is not time-keyed.
    values : bool, default False
        Add ``values``: each row's feature values (a dict), read from the source (and to
        each neighbourhood record, its own).
    time : str, optional
        The key column ordering rows in time (default: the one timestamp key column).

    Returns
    -------
    pandas.DataFrame
        One row per chosen row, in order of priority: ``row_key`` (the JSON text to label
        it by), the key columns, ``score``, ``is_anomaly`` and ``top_features`` where the
        output has them, ``priority`` (the strategy's measure) and ``strategy``, then
        ``neighbourhood`` and ``values`` when asked for.

    Raises
    ------
    adp.errors.ConfigError
        For an unknown strategy, a bad ``n``, or a strategy missing what it needs.
    """
    check_strategy(strategy)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n must be a positive number of rows, got {n!r}")
    n = int(n)
    name, version = _model_parts(model)
    scored = output if isinstance(output, ScoredOutput) else open_output(output, storage_options)
    if reviewed is None:
        if name is not None:
            from adp.feedback.labels import LabelStore

            owned = store is None
            store = store if store is not None else LabelStore()
            try:
                reviewed = store.reviewed_keys(name)
            finally:
                if owned:
                    store.close()
        else:
            reviewed = ()
    reviewed = frozenset(reviewed)
    candidates = with_keys(scored.frame, scored.key, reviewed)

    if strategy == "top":
        chosen = pick_top(candidates, n)
    elif strategy == "random":
        chosen = pick_random(candidates, n, seed)
    elif strategy == "uncertain":
        if scored.threshold is None:
            raise ConfigError(
                "strategy 'uncertain' needs the output's threshold and none is recorded: "
                "give scored_frame(frame, threshold=...)"
            )
        chosen = pick_uncertain(candidates, n, scored.threshold)
    else:
        if detector is None and strategy == "disagreement":
            if name is None:
                raise ConfigError(
                    "strategy 'disagreement' needs the model: give --model NAME@VERSION"
                )
            from adp.models.api import get

            detector = get(name, version if version is not None else "latest")
        chosen = _with_features(
            scored, candidates, strategy, n, detector, reviewed, source, seed, storage_options
        )
    chosen["strategy"] = strategy
    chosen = chosen.reset_index(drop=True)
    if context or values:
        chosen = _with_context(
            scored, chosen, context, values, detector, source, storage_options, time
        )
    return chosen


def _with_context(
    scored: ScoredOutput,
    chosen: pd.DataFrame,
    context: int,
    values: bool,
    detector: BaseDetector | None,
    source: dd.DataFrame | str | None,
    storage_options: dict[str, Any] | None,
    time: str | None,
) -> pd.DataFrame:
    """``chosen`` with ``neighbourhood`` (``context`` rows each side) and/or ``values``."""
    from adp.feedback.neighbourhood import neighbourhoods, time_column

    near: dict[str, pd.DataFrame] = {}
    timed = time_column(scored, time) is not None
    if context and timed:
        near = neighbourhoods(scored, chosen, before=context, after=context, time=time)
    found = pd.DataFrame()
    if values and len(chosen):
        keys = set(chosen[KEY_COLUMN]).union(*(set(f[KEY_COLUMN]) for f in near.values()))
        features = list(detector.features_) if detector is not None else scored.features
        found = row_values(scored, keys, features, source, storage_options)
    if values:
        chosen["values"] = [_values_of(found, k) for k in chosen[KEY_COLUMN]]
    if context:
        chosen["neighbourhood"] = [
            _records(near[k], found if values else None) if timed and k in near else None
            for k in chosen[KEY_COLUMN]
        ]
    return chosen


def _values_of(found: pd.DataFrame, key: str) -> dict[str, Any] | None:
    if key not in found.index:
        return None
    return {str(c): _plain_value(v) for c, v in found.loc[key].items()}


def _plain_value(value: Any) -> Any:
    item = getattr(value, "item", None)
    value = item() if callable(item) and not isinstance(value, list | tuple) else value
    if isinstance(value, float) and value != value:
        return None
    return value


def _records(frame: pd.DataFrame, found: pd.DataFrame | None) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict(orient="records"):
        if found is not None:
            record["values"] = _values_of(found, record[KEY_COLUMN])
        out.append(record)
    return out


def row_values(
    scored: ScoredOutput,
    keys: Iterable[str],
    features: Sequence[str],
    source: dd.DataFrame | str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The feature values of the rows whose key texts are ``keys``, read from the source
    the output was scored from (or ``source``), in one pass; only those rows reach the
    client.

    Returns
    -------
    pandas.DataFrame
        Indexed by key text, one column per feature (a key found twice keeps its first).

    Raises
    ------
    adp.errors.ConfigError
        When no features are known or the output records no source.
    """
    features = [f for f in features if f not in scored.key]
    if not features:
        raise ConfigError(
            "the rows' feature values need the model's features and the output records "
            "none: give the model (detector=...)"
        )
    wanted = set(keys)
    rows = _source_frame(
        scored, source, list(dict.fromkeys([*scored.key, *features])), storage_options
    )
    found = filter_keys(with_keys(rows, scored.key), wanted).compute()
    found = found.drop_duplicates(KEY_COLUMN).set_index(KEY_COLUMN)
    return found[features]


def _with_features(
    scored: ScoredOutput,
    candidates: dd.DataFrame,
    strategy: str,
    n: int,
    detector: BaseDetector | None,
    reviewed: frozenset[str],
    source: dd.DataFrame | str | None,
    seed: int,
    storage_options: dict[str, Any] | None,
) -> pd.DataFrame:
    """``disagreement`` and ``diverse``: choose by the rows' features, return output rows."""
    features = list(detector.features_) if detector is not None else scored.features
    if not features:
        raise ConfigError(
            f"strategy {strategy!r} needs the model's features and the output records none: "
            "give the model (--model NAME@VERSION)"
        )
    rows = _source_frame(
        scored, source, list(dict.fromkeys([*scored.key, *features])), storage_options
    )
    if detector is not None:
        rows = detector.prepare(rows)
    if strategy == "disagreement":
        assert detector is not None
        ensemble = ensemble_of(detector)
        keyed = with_keys(rows, scored.key, reviewed)
        picked = pick_disagreement(keyed, n, ensemble.model_ref(), features)
        priorities = dict(zip(picked[KEY_COLUMN], picked[PRIORITY], strict=True))
    else:
        priorities = _diverse(scored, candidates, rows, n, features, reviewed, seed)
    found = filter_keys(candidates, set(priorities)).compute()
    found[PRIORITY] = found[KEY_COLUMN].map(priorities).astype(np.float64)
    ascending = strategy == "diverse"  # diverse: the k-means++ pick order
    return found.sort_values(PRIORITY, ascending=ascending, kind="stable")


def _diverse(
    scored: ScoredOutput,
    candidates: dd.DataFrame,
    rows: dd.DataFrame,
    n: int,
    features: list[str],
    reviewed: frozenset[str],
    seed: int,
) -> dict[str, float]:
    """Key text -> pick order of ``n`` flagged rows spread by k-means++ seeding."""
    from adp.config import settings

    if "is_anomaly" not in candidates.columns:
        raise ConfigError(
            "strategy 'diverse' spreads over flagged rows: the output has no is_anomaly"
        )
    flagged = candidates[candidates["is_anomaly"]]
    sample = sample_keys(flagged, max(n, settings().feedback.diverse_rows), seed)
    if sample.empty:
        return {}
    keyed = with_keys(rows, scored.key, reviewed)
    found = filter_keys(keyed, set(sample[KEY_COLUMN])).compute()
    found = found.drop_duplicates(KEY_COLUMN).dropna(subset=features)
    positions = kmeans_plusplus_rows(found[features], n, seed)
    keys = found[KEY_COLUMN].to_numpy()[positions]
    return {str(k): float(i) for i, k in enumerate(keys)}


__all__ = ["ensemble_of", "next_rows", "row_values", "with_keys"]

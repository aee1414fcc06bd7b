"""Per-key windows: their features follow the definition, their state survives restarts in
Redis and SQL, and a replayed event never joins a window twice. And a refit request on
drift: a job spec `adp run` accepts, written only once audited."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from stream_helpers import REDIS_URL, unique

from adp.errors import SpecError
from adp.stream.spec import StreamSpec
from adp.stream.window_store import RedisWindowStore, SqlWindowStore
from adp.stream.windows import Windows, WindowShape, window_features

SHAPES = [
    WindowShape(("k",), 5, 5, ("x", "y"), ("mean", "std", "diff_from_mean")),  # tumbling
    WindowShape(("k",), 6, 2, ("x", "y"), ("mean", "std", "diff_from_mean")),  # sliding
    WindowShape(("k",), 4, 1, ("x", "y"), ("diff_from_mean",)),  # rolling
]


def _events(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "k": rng.choice(["a", "b", "c"], size=n),
            "x": rng.normal(size=n),
            "y": rng.gamma(2.0, size=n),
        }
    )


def _reference(frame: pd.DataFrame, shape: WindowShape) -> pd.DataFrame:
    """The module's definition, spelled out naively: event n of a key (1-based) sees the
    window as refreshed after event b, the last refresh before it (after each of the first
    size - 1 events, then after size, size + slide, ...): the key's events b - size + 1..b."""
    out = {name: np.empty(len(frame)) for name in shape.names}
    seen: dict[Any, list[np.ndarray]] = {}
    for i, (key, row) in enumerate(
        zip(frame["k"], frame[list(shape.columns)].to_numpy(), strict=True)
    ):
        earlier = seen.setdefault(key, [])
        n = len(earlier) + 1
        refreshes = [
            r for r in range(1, n) if r < shape.size or (r - shape.size) % shape.slide == 0
        ]
        if refreshes:
            b = refreshes[-1]
            block = np.asarray(earlier[max(0, b - shape.size) : b])
            mean, std = block.mean(axis=0), block.std(axis=0)
        else:
            mean, std = row, np.zeros_like(row)
        for j, column in enumerate(shape.columns):
            values = {"mean": mean[j], "std": std[j], "diff_from_mean": row[j] - mean[j]}
            for feature in shape.features:
                out[f"{column}_{feature}"][i] = values[feature]
        earlier.append(row)
    return pd.DataFrame(out, index=frame.index)


@pytest.mark.parametrize("shape", SHAPES, ids=["tumbling", "sliding", "rolling"])
def test_window_features_follow_the_definition(shape: WindowShape) -> None:
    events = _events(300, seed=1)
    computed = window_features(events, shape)
    expected = _reference(events, shape)
    assert list(computed.columns) == ["k", "x", "y", *shape.names]
    assert np.max(np.abs(computed[shape.names].to_numpy() - expected.to_numpy())) <= 1e-12
    assert np.abs(computed[shape.names].to_numpy()).sum() > 0


class DictStore:
    """A window store in a dict, which a test can 'crash' by not calling save."""

    name = "memory"

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def load(self) -> dict[str, bytes]:
        return dict(self.data)

    def save(self, states: Mapping[str, bytes]) -> None:
        self.data.update(states)

    def close(self) -> None:
        pass


def _batches(events: pd.DataFrame, size: int) -> list[tuple[list[str], list[str], np.ndarray]]:
    ids = [f"{1000 + i}-0" for i in range(len(events))]
    keys = [f'["{k}"]' for k in events["k"]]
    values = events[["x", "y"]].to_numpy()
    return [
        (ids[i : i + size], keys[i : i + size], values[i : i + size])
        for i in range(0, len(events), size)
    ]


def _counts(windows: Windows, events: pd.DataFrame) -> dict[str, int]:
    return {k: windows.window(f'["{k}"]').count for k in sorted(set(events["k"]))}


@pytest.mark.parametrize("crash", ["before the save", "after the save"])
def test_restored_windows_continue_exactly_and_a_replayed_batch_joins_once(crash: str) -> None:
    shape = SHAPES[1]
    events = _events(400, seed=2)
    batches = _batches(events, 50)
    uninterrupted = Windows(shape, shape.names)
    expected = [uninterrupted.apply(*batch)[0] for batch in batches]

    store = DictStore()
    windows = Windows(shape, shape.names, store=store)
    got = []
    for number, batch in enumerate(batches):
        features, states = windows.apply(*batch)
        got.append(features)
        if number == 3 and crash == "before the save":
            windows = Windows(shape, shape.names, store=store)  # the consumer died
            features, states = windows.apply(*batch)  # batch 3 delivered again
            got[-1] = features
        windows.save(states)
        if number == 3 and crash == "after the save":
            windows = Windows(shape, shape.names, store=store)  # died before the ack
            replay, states = windows.apply(*batch)  # delivered again: joins no window
            assert not states
            windows.save(states)
    for features, want in zip(got, expected, strict=True):
        assert np.max(np.abs(features - want)) <= 1e-12
    restored = Windows(shape, shape.names, store=store)
    assert _counts(restored, events) == events["k"].value_counts().sort_index().to_dict()


def _check_store(store: Any) -> None:
    shape = SHAPES[0]
    events = _events(60, seed=3)
    windows = Windows(shape, shape.names, store=store)
    for batch in _batches(events, 25):
        windows.save(windows.apply(*batch)[1])
    restored = Windows(shape, shape.names, store=store)
    assert len(restored) == 3
    assert _counts(restored, events) == events["k"].value_counts().sort_index().to_dict()
    for key in ("a", "b", "c"):
        mine, theirs = windows.window(f'["{key}"]'), restored.window(f'["{key}"]')
        assert (mine.last, mine.mean, mine.std) == (theirs.last, theirs.mean, theirs.std)
        assert list(mine.values) == list(theirs.values)
    other = WindowShape(("k",), 7, 7, ("x", "y"), ("mean",))
    with pytest.raises(SpecError, match="made by another window"):
        Windows(other, other.names, store=store)


def test_window_state_persists_in_sqlite(tmp_path: Path) -> None:
    _check_store(SqlWindowStore(f"sqlite:///{tmp_path / 'w.db'}", "windows", "redis:s#g"))


@pytest.mark.postgres
def test_window_state_persists_in_postgresql(pg_url: str, table_name: str) -> None:
    _check_store(SqlWindowStore(pg_url, table_name, unique("stream")))


def test_window_state_persists_in_redis(redis_client: Any, redis_stream: str) -> None:
    store = RedisWindowStore(REDIS_URL, f"{redis_stream}:windows")
    try:
        _check_store(store)
    finally:
        store.close()


def test_windows_need_the_model_to_know_their_features() -> None:
    shape = SHAPES[0]
    with pytest.raises(SpecError, match=r"model has no features \['x_std', 'y_std'\]"):
        Windows(shape, ["x", "y", "x_mean", "x_diff_from_mean", "y_mean", "y_diff_from_mean"])


BASE: dict[str, Any] = {
    "source": {"kind": "nats", "url": "nats://127.0.0.1:4222", "stream": "events"},
    "model": "sensors@3",
    "sinks": {"stream": {"stream": "out"}},
    "dead_letter": {"stream": "dead"},
}


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"by": "k", "size": 5, "columns": ["x"]}, "window.state: give url"),
        ({"by": "k", "size": 5, "slide": 6, "columns": ["x"]}, "slide (6) exceeds size (5)"),
        ({"by": ["k"], "size": 5, "columns": ["k"], "state": {"url": "redis://h/0"}}, "both"),
        ({"by": "k", "size": 5, "columns": ["x"], "features": ["median"]}, "window.features"),
        ({"by": "k", "size": 5, "columns": ["x"], "state": {"url": "s3://b/x"}}, "neither"),
    ],
)
def test_window_mistakes_are_refused_naming_the_field(window: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match="stream spec is invalid") as info:
        StreamSpec.from_dict({**BASE, "window": window})
    assert message in str(info.value)
    good = StreamSpec.from_dict(
        {**BASE, "window": {"by": "k", "size": 5, "columns": ["x"], "state": {"url": "redis://h"}}}
    )
    assert good.window is not None and good.window.shape().slide == 5


def test_a_refit_request_for_a_registered_model_exists_only_once_audited(
    training: Any, tmp_path: Path
) -> None:
    from adp.errors import AuditError
    from adp.jobs.spec import JobSpec
    from adp.stream.drift import DriftCheck
    from adp.stream.model import StreamModel
    from adp.stream.refit import RefitRequests

    spec = StreamSpec.from_dict(
        {
            **BASE,
            "model": training.ref,
            "threshold": {"source": {"uri": str(training.path)}},
            "drift": {"refit": True},
        }
    )
    detector = training.detector
    model = StreamModel(detector, training.ref, str(detector.model_id_))
    check = DriftCheck("psi", 0.5, 0.2, True, 5000)

    def refuse(event_type: str, action: str, details: dict[str, Any]) -> None:
        raise AuditError("the audit database went away")

    with pytest.raises(AuditError):
        RefitRequests(spec, model, "run-1", refuse, tmp_path)(check)
    assert list(tmp_path.iterdir()) == []  # unaudited: no request left, not even hidden

    records: list[tuple[str, str, dict[str, Any]]] = []
    path = RefitRequests(spec, model, "run-2", lambda *r: records.append(r), tmp_path)(check)
    assert list(tmp_path.iterdir()) == [path]
    assert records == [("stream.refit", "requested", records[0][2])]
    assert records[0][2]["path"] == str(path) and records[0][2]["model"] == training.ref
    request = yaml.safe_load(path.read_text())
    assert request["register"] == {"name": training.ref.split("@")[0]}
    job = JobSpec.from_dict(request["job"])
    assert job.detector is not None and job.detector.name == detector.name
    assert job.detector.params["random_state"] == 0
    assert job.detector.params["contamination"] == detector.contamination

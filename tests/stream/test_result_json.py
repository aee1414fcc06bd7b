"""A stream sink's JSON objects carry every result value as it was: awkward strings, exact
floats, missing values, and columns that hold one value throughout (written once into the
row template) beside ones that vary."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pandas as pd
import pytest

from adp.stream.result_text import result_json
from adp.stream.sinks import result_records

_AWKWARD = ['quo"te', "tab\there", "back\\slash", "100%s", "%(x)s", "", "ünï", "nul\x00l"]


def _results(constant_sensor: bool) -> pd.DataFrame:
    n = len(_AWKWARD)
    stamps = pd.to_datetime(np.arange(n) * 1.5 + 1.7e9, unit="s", utc=True)
    return pd.DataFrame(
        {
            "sensor": ["100%s"] * n if constant_sensor else _AWKWARD,
            "line": np.arange(n, dtype=np.int64) * 1_000_000_007,
            "score": np.linspace(-1e-300, 3.0, n) + 1 / 3,
            "gain": [0.5, np.nan, -2.25, 1e-310, np.inf, -0.0, 1e-7, 3.0],
            "is_anomaly": np.arange(n) % 2 == 0,
            "threshold": 0.5,
            "model": 'm"%s@1',
            "event_time": stamps.where(np.arange(n) != 3),  # one without a time
            "scored_at": pd.Timestamp("2026-11-28 08:00:00.123456", tz="UTC"),
        },
        index=pd.Index([f"{i}-0 {_AWKWARD[i]}" for i in range(n)], name="message_id"),
    )


def _same(got: object, want: object) -> bool:
    if isinstance(want, float) and isinstance(got, float):
        return got == want and math.copysign(1, got) == math.copysign(1, want)
    if isinstance(want, float) and not math.isfinite(want):
        return got is None  # JSON has no NaN or infinity: null
    if isinstance(want, pd.Timestamp):
        return pd.Timestamp(got) == want  # type: ignore[arg-type]
    return got == want


@pytest.mark.parametrize("constant_sensor", [False, True])
def test_every_value_round_trips_through_the_json_objects(constant_sensor: bool) -> None:
    results = _results(constant_sensor)
    published = result_json(results)
    assert [mid for mid, _ in published] == list(results.index)
    for (mid, body), record in zip(published, result_records(results), strict=True):
        got = orjson.loads(body)
        assert list(got) == ["message_id", *results.columns]
        assert got["message_id"] == mid
        for name, want in record.items():
            assert _same(got[name], want), (name, got[name], want)


def test_one_row_and_no_rows() -> None:
    one = _results(False).iloc[[3]]
    ((mid, body),) = result_json(one)
    got = orjson.loads(body)
    assert got["sensor"] == "100%s" and got["event_time"] is None and got["message_id"] == mid
    assert result_json(one.iloc[:0]) == []


@pytest.mark.parametrize("dtype", ["string[pyarrow]", "string[python]", "Int64", "boolean"])
@pytest.mark.parametrize("missing_at", [0, 2])
def test_a_nullable_column_with_one_value_and_a_missing_one_keeps_the_missing_one(
    dtype: str, missing_at: int
) -> None:
    value = {"Int64": 7, "boolean": True}.get(dtype, "s1")
    values = pd.array([value] * 4, dtype=dtype)
    values[missing_at] = pd.NA
    results = _results(False).iloc[:4].assign(sensor=values)
    got = [orjson.loads(body)["sensor"] for _, body in result_json(results)]
    assert got == [None if i == missing_at else value for i in range(4)]

"""The SQL sink stores every result value as it was, on SQLite and PostgreSQL alike
(PostgreSQL's path copies the batch in COPY's text format, which has its own escapes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from adp.stream.sinks import SqlSink

_AWKWARD = ["plain", "tab\there", "new\nline", "back\\slash", "cr\rhere", "\\N", "", "ünï"]


def _results() -> pd.DataFrame:
    n = len(_AWKWARD)
    stamps = pd.to_datetime(np.arange(n) * 1.5 + 1.7e9, unit="s", utc=True)
    frame = pd.DataFrame(
        {
            "sensor": _AWKWARD,
            "line": np.arange(n, dtype=np.int64) * 1_000_000_007,
            "gain": [0.5, np.nan, -2.25, 1e-310, 7.0, np.nan, 0.1, 3.0],
            "score": np.linspace(-1e-300, 3.0, n) + 1 / 3,
            "is_anomaly": np.arange(n) % 2 == 0,
            "threshold": [np.nan, 0.5, 0.5, np.inf, 0.5, 0.5, 0.5, 0.5],
            "model": "m@1",
            "event_time": stamps.where(np.arange(n) != 3),  # one without a time
            "scored_at": pd.Timestamp("2026-11-28 08:00:00.123456", tz="UTC"),
        },
        index=pd.Index([f"{i}-0\t{_AWKWARD[i]}" for i in range(n)], name="message_id"),
    )
    return frame


def _round_trip(url: str, table: str) -> None:
    results = _results()
    sink = SqlSink(url, table, key=["sensor", "line", "gain"])
    sink.write(results)
    sink.write(results)  # again: nothing new
    back = pd.read_sql_table(table, sa.create_engine(url)).set_index("message_id")
    back = back.loc[results.index]
    assert len(back) == len(results)
    assert back["sensor"].tolist() == _AWKWARD
    assert back["line"].tolist() == results["line"].tolist()
    with sa.create_engine(url).connect() as conn:  # null, not NaN, as result_records gives
        nulls = conn.execute(sa.text(f"select count(*) from {table} where gain is null"))
        assert nulls.scalar_one() == 2
    gain = back["gain"].tolist()
    assert [np.isnan(g) for g in gain] == [i in (1, 5) for i in range(len(results))]
    assert [g for g in gain if not np.isnan(g)] == [0.5, -2.25, 1e-310, 7.0, 0.1, 3.0]
    assert back["score"].tolist() == results["score"].tolist()  # every digit
    assert back["is_anomaly"].astype(bool).tolist() == results["is_anomaly"].tolist()
    threshold = back["threshold"].tolist()
    assert np.isnan(threshold[0]) and np.isnan(threshold[3])  # none yet: null
    assert threshold[1:3] == [0.5, 0.5]
    assert (back["model"] == "m@1").all()
    times = pd.to_datetime(back["event_time"], utc=True)
    assert times.isna().tolist() == [i == 3 for i in range(len(results))]
    expected = results["event_time"].dropna()
    assert (times.dropna().to_numpy() == expected.to_numpy()).all()
    scored = pd.to_datetime(back["scored_at"], utc=True)
    assert (scored == pd.Timestamp("2026-11-28 08:00:00.123456", tz="UTC")).all()


def test_awkward_values_round_trip_on_sqlite(tmp_path: Path) -> None:
    _round_trip(f"sqlite:///{tmp_path / 'r.db'}", "results")


@pytest.mark.postgres
def test_awkward_values_round_trip_on_postgresql(pg_url: str, table_name: str) -> None:
    _round_trip(pg_url, table_name)


def test_a_driver_that_is_not_installed_is_a_config_error_naming_the_field() -> None:
    from adp.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^sinks\.sql\.url .* names database driver"):
        SqlSink("postgresql+nodriver://u@127.0.0.1/db", "results")
    with pytest.raises(ConfigError, match=r"^--sql .* names database driver 'postgresql\+x'"):
        SqlSink("postgresql+x://u@127.0.0.1/db", "results", url_field="--sql")

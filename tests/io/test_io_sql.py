"""SQL sources and sinks on SQLite (always) and the machine's PostgreSQL: tables and
selectables read in parallel in bounded ranges on the workers, and idempotent writes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import adp
from adp.db import engine_for
from adp.io.sql import read_sql, write_table
from adp.io.sql_write import _write_stage, table_rows


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return request.getfixturevalue("pg_url")


def _metrics(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": np.arange(10, 10 + n, dtype=np.int64),
            "ts": pd.date_range("2026-11-01", periods=n, freq="min"),
            "site": np.where(np.arange(n) % 2, "a", "b"),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    )


def _load(url: str, name: str, df: pd.DataFrame) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        df.to_sql(name, conn, index=False)
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text(f'ALTER TABLE "{name}" ADD PRIMARY KEY (id)'))
    engine.dispose()


def test_table_is_read_in_n_bounded_partitions_on_the_workers(client, db, table_name):
    df = _metrics()
    _load(db, table_name, df)
    ddf = adp.read(db, table=table_name, index_col="id", npartitions=4)
    assert ddf.npartitions == 4
    assert ddf.known_divisions and ddf.divisions[0] == 10 and ddf.divisions[-1] == 2009
    lengths = ddf.map_partitions(len).compute()
    assert all(n > 0 for n in lengths) and sum(lengths) == len(df)
    readers = set(ddf.map_partitions(lambda p: pd.Series([os.getpid()])).compute())
    assert os.getpid() not in readers  # read by the worker processes, not the client
    out = ddf.compute()
    assert out.index.name == "id" and out.index.is_monotonic_increasing
    np.testing.assert_allclose(out["x"].to_numpy(), df["x"].to_numpy())
    assert out["ts"].dtype.kind == "M"


def test_datetime_index_columns_and_filters(client, db, table_name):
    df = _metrics(1000)
    _load(db, table_name, df)
    by_time = adp.read(db, table=table_name, index_col="ts", npartitions=3, columns=["x"])
    assert list(by_time.columns) == ["x"] and by_time.npartitions == 3
    out = by_time.compute()
    assert len(out) == 1000 and out.index.is_monotonic_increasing
    filtered = read_sql(
        db, table_name, index_col="id", npartitions=2, filters=[("site", "==", "a")]
    )
    assert len(filtered.compute()) == (df["site"] == "a").sum()


def test_query_is_a_selectable_with_bound_parameters(client, db, table_name):
    df = _metrics(800)
    _load(db, table_name, df)
    table = sa.Table(table_name, sa.MetaData(), autoload_with=engine_for(db))
    query = sa.select(table.c.id, table.c.x).where(table.c.x > 0.5)
    out = adp.read(db, query=query, index_col="id", npartitions=3).compute()
    assert len(out) == (df["x"] > 0.5).sum()
    assert list(out.columns) == ["x"]


def test_default_index_is_the_integer_primary_key(client, tmp_path, table_name):
    url = f"sqlite:///{tmp_path / 'pk.db'}"
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    table = sa.Table(
        table_name, meta, sa.Column("rid", sa.Integer, primary_key=True), sa.Column("v", sa.Float)
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{"rid": i, "v": float(i)} for i in range(50)])
    ddf = adp.read(url, table=table_name, npartitions=2)
    assert ddf.index.name == "rid" and len(ddf.compute()) == 50


def _scored(n: int, offset: float = 0.0) -> pd.DataFrame:
    df = pd.DataFrame({"sensor": np.arange(n) % 7, "step": np.arange(n) // 7})
    df["score"] = np.linspace(0, 1, n) + offset
    df["is_anomaly"] = df["score"] > 0.9 + offset
    return df


def test_write_table_modes_are_idempotent(client, db, table_name):
    import dask.dataframe as dd

    first = dd.from_pandas(_scored(700), npartitions=4)
    assert write_table(first, db, table_name, key=["sensor", "step"]) == 700
    from adp.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match=table_name):
        write_table(first, db, table_name, key=["sensor", "step"])
    for _ in range(2):  # re-running neither duplicates nor loses rows
        write_table(first, db, table_name, key=["sensor", "step"], mode="upsert")
        assert table_rows(db, table_name) == 700
    # upsert replaces rows with the same key and keeps the others
    later = dd.from_pandas(_scored(1000, offset=10.0).iloc[300:], npartitions=3)
    write_table(later, db, table_name, key=["sensor", "step"], mode="upsert")
    back = pd.read_sql(sa.text(f'SELECT * FROM "{table_name}"'), engine_for(db))
    assert len(back) == 1000
    assert (back.loc[back["step"] * 7 + back["sensor"] >= 300, "score"] >= 10).all()
    assert (back.loc[back["step"] * 7 + back["sensor"] < 300, "score"] <= 1).all()
    write_table(first, db, table_name, key=["sensor", "step"], mode="overwrite")
    assert table_rows(db, table_name) == 700


def test_a_retried_partition_does_not_duplicate_staging_rows(tmp_path, table_name):
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    part = _scored(50)
    engine = sa.create_engine(url)
    stage = f"{table_name}_stage"
    with engine.begin() as conn:
        part.assign(_adp_part=0).iloc[:0].to_sql(stage, conn, index=False)
    for _ in range(3):  # the same task run three times (worker lost, task retried)
        _write_stage(part, url, stage, 0, None)
    _write_stage(part.iloc[:10], url, stage, 1, None)
    assert table_rows(url, stage) == 60


def test_scored_rows_go_back_to_the_database(client, db, table_name):
    df = _metrics(1500)
    _load(db, table_name, df)
    ddf = adp.read(db, table=table_name, index_col="id", npartitions=3)
    det = adp.create_detector("hbos", contamination=0.02).fit(ddf, features=["x", "y"])
    scored = det.detect(ddf)
    target = f"{table_name}_scores"
    assert write_table(scored, db, target, key=["id"], mode="overwrite") == 1500
    back = pd.read_sql(sa.text(f'SELECT * FROM "{target}"'), engine_for(db))
    assert sorted(back["id"]) == sorted(df["id"])
    assert int(back["is_anomaly"].astype(bool).sum()) == pytest.approx(30, abs=2)

"""The one SQL base (adp/db.py): one identifier rule for every caller, one engine factory
whose URL checks apply to io, the model registry and the audit log alike."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import dask
import dask.dataframe as dd
import pandas as pd
import pytest
import sqlalchemy as sa

from adp.db import IDENTIFIER_MAX_LENGTH, check_identifier, engine_for, write_transaction
from adp.errors import AccessDeniedError, ConfigError

LONGEST = "A" + "b" * (IDENTIFIER_MAX_LENGTH - 1)
TOO_LONG = LONGEST + "c"


def test_the_identifier_rule() -> None:
    assert IDENTIFIER_MAX_LENGTH == 42
    for good in ("t", "_adp_stage_0123456789ab", "Mixed_Case_9", LONGEST):
        assert check_identifier(good) == good
    for bad in ("", "9lives", "a-b", "a b", "x; DROP TABLE y", "é", TOO_LONG, None):
        with pytest.raises(ConfigError, match=r"column name .* is not a plain SQL identifier"):
            check_identifier(bad, "column name")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at most 42 characters"):
        check_identifier(TOO_LONG)


def _frame() -> dd.DataFrame:
    return dd.from_pandas(pd.DataFrame({"id": [1, 2, 3], "score": [0.1, 0.2, 0.9]}), 2)


def test_every_caller_takes_the_longest_name_and_refuses_a_longer_one(
    tmp_path: Path, table_name: str
) -> None:
    from adp.io.sql_write import table_rows, write_table
    from adp.models.metadata import Catalog
    from adp.observe.audit import AuditLog

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    sink_table = (table_name + "_" + "x" * 40)[:IDENTIFIER_MAX_LENGTH]
    assert write_table(_frame(), url, sink_table, key=["id"]) == 3
    assert table_rows(url, sink_table) == 3
    catalog = Catalog(url, table_prefix=LONGEST)
    assert sa.inspect(catalog.engine).has_table(f"{LONGEST}model_versions")
    catalog.close()
    with AuditLog(url, table=LONGEST, state_dir=tmp_path / "state") as log:
        log.append("db.test", action="write")
        assert log.verify().ok
    con = sqlite3.connect(tmp_path / "db.sqlite")  # the triggers name the mixed-case table
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute(f'DELETE FROM "{LONGEST}"')
    con.close()

    with pytest.raises(ConfigError, match="not a plain SQL identifier"):
        write_table(_frame(), url, TOO_LONG, key=["id"])
    with pytest.raises(ConfigError, match="table prefix .* not a plain SQL identifier"):
        Catalog(url, table_prefix=TOO_LONG)
    with pytest.raises(ConfigError, match="audit table name .* not a plain SQL identifier"):
        AuditLog(url, table=TOO_LONG, state_dir=tmp_path / "state")


def test_derived_names_stay_whole_on_postgresql(pg_url: str) -> None:
    from adp.models.metadata import Catalog
    from adp.observe.audit import AuditLog

    prefix = f"P{uuid.uuid4().hex}_{'x' * 20}"[: IDENTIFIER_MAX_LENGTH - 1] + "_"
    assert len(prefix) == IDENTIFIER_MAX_LENGTH
    catalog = Catalog(pg_url, table_prefix=prefix)
    try:
        with catalog.engine.connect() as conn:
            names = set(
                conn.execute(
                    sa.text("SELECT relname FROM pg_class WHERE relname LIKE :p"),
                    {"p": f"{prefix}%"},
                ).scalars()
            )
        assert f"{prefix}model_versions_id_seq" in names  # 63 characters, not truncated
        assert f"{prefix}model_name_version" in names
    finally:
        catalog.drop()
    table = f"Audit_{uuid.uuid4().hex}"[:IDENTIFIER_MAX_LENGTH]
    log = AuditLog(pg_url, table=table)
    engine = sa.create_engine(pg_url)
    try:
        log.append("db.test", action="write")
        assert log.verify().ok
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
            conn.exec_driver_sql(f"UPDATE \"{table}\" SET action = 'x'")
    finally:
        log.close()
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
            conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{table}_append_only"()')
        engine.dispose()


def test_allowed_roots_apply_to_every_database_but_the_state_dir_stays_usable(
    tmp_path: Path,
) -> None:
    from adp.models.api import ModelRegistry, default_registry
    from adp.observe.audit import AuditLog

    state = tmp_path / "state"
    outside = f"sqlite:///{tmp_path / 'elsewhere' / 'x.db'}"
    config = {"adp.io.allowed-roots": [str(tmp_path / "lake")], "adp.state-dir": str(state)}
    with dask.config.set({**config, "adp.audit.url": None, "adp.models.url": None}):
        with AuditLog() as log:  # sqlite:///<state-dir>/audit.db
            log.append("db.test", action="write")
        registry = default_registry()  # sqlite:///<state-dir>/models.db
        assert registry.versions() == []
        for make in (
            lambda: engine_for(outside),
            lambda: AuditLog(outside),
            lambda: ModelRegistry(outside, str(state / "models")),
        ):
            with pytest.raises(AccessDeniedError, match=r"x\.db.*outside the allowed roots"):
                make()


def test_link_local_hosts_are_refused_for_every_database(tmp_path: Path) -> None:
    from adp.models.api import ModelRegistry
    from adp.observe.audit import AuditLog

    url = "postgresql+psycopg://u:secret@169.254.169.254:5432/db"
    for make in (
        lambda: engine_for(url),
        lambda: AuditLog(url, state_dir=tmp_path),
        lambda: ModelRegistry(url, str(tmp_path)),
    ):
        with pytest.raises(AccessDeniedError, match="link-local") as err:
            make()
        assert "secret" not in str(err.value)


def test_shared_and_private_engines(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    assert engine_for(url) is engine_for(url)
    assert engine_for(url, sqlite_timeout=30) is not engine_for(url)
    assert engine_for(url, shared=False) is not engine_for(url, shared=False)


def test_sqlite_ddl_is_transactional_and_writes_queue(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    engine = engine_for(url, sqlite_immediate=False, sqlite_timeout=5, shared=False)
    with pytest.raises(RuntimeError, match="boom"), engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        raise RuntimeError("boom")
    assert not sa.inspect(engine).has_table("t")  # the CREATE was rolled back

    order: list[str] = []
    with write_transaction(engine) as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")

        def second() -> None:
            with write_transaction(engine) as other:  # waits for the first one's lock
                order.append("second")
                other.exec_driver_sql("INSERT INTO t VALUES (2)")

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        order.append("first")
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    thread.join()
    assert order == ["first", "second"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t ORDER BY rowid").scalars().all() == [1, 2]
    engine.dispose()

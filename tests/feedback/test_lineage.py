"""Lineage in the model registry: parent, label-set hash and method, on SQLite and
PostgreSQL, added to a registry table made before the columns existed."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from adp.errors import ConfigError
from adp.models.api import ModelRegistry
from adp.models.metadata import LINEAGE_COLUMNS

SHA = "ab" * 32


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'models.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


def _old_table(url: str, prefix: str) -> None:
    """The registry table as ADP made it before lineage, with one version in it."""
    engine = sa.create_engine(url)
    metadata = sa.MetaData()
    table = sa.Table(
        f"{prefix}model_versions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        *(
            sa.Column(name, kind, nullable=False)
            for name, kind in [
                ("name", sa.String(128)),
                ("version", sa.Integer),
                ("stage", sa.String(16)),
                ("detector", sa.String(128)),
                ("params", sa.JSON),
                ("contamination", sa.JSON),
                ("features", sa.JSON),
                ("metrics", sa.JSON),
                ("versions", sa.JSON),
                ("user_metadata", sa.JSON),
                ("artifact_uri", sa.Text),
                ("sha256", sa.String(64)),
                ("size_bytes", sa.BigInteger),
                ("created_at", sa.DateTime(timezone=True)),
                ("created_by", sa.String(128)),
            ]
        ),
        *(
            sa.Column(name, kind)
            for name, kind in [
                ("source", sa.Text),
                ("fingerprint", sa.String(128)),
                ("sample_rows", sa.BigInteger),
                ("rows_seen", sa.BigInteger),
                ("stage_changed_at", sa.DateTime(timezone=True)),
            ]
        ),
        sa.UniqueConstraint("name", "version", name=f"{prefix}model_name_version"),
    )
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            table.insert().values(
                name="old",
                version=1,
                stage="none",
                detector="hbos",
                params={},
                contamination=0.1,
                features=["a"],
                metrics={},
                versions={},
                user_metadata={},
                artifact_uri="/nowhere",
                sha256="0" * 64,
                size_bytes=1,
                created_at=dt.datetime.now(dt.UTC),
                created_by="someone",
            )
        )
    engine.dispose()


def test_an_older_registry_gains_the_lineage_columns(
    database: str, tmp_path: Path, fitted_hbos: Any
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    _old_table(database, prefix)
    registry = ModelRegistry(database, str(tmp_path / "store"), table_prefix=prefix)
    try:
        columns = {
            c["name"]
            for c in sa.inspect(registry.catalog.engine).get_columns(f"{prefix}model_versions")
        }
        assert set(LINEAGE_COLUMNS) <= columns
        old = registry.info("old", 1)
        assert (old.parent, old.label_sha256, old.method) == (None, None, None)
        ModelRegistry(
            database, str(tmp_path / "store"), table_prefix=prefix
        ).close()  # again: a no-op

        first = registry.register(fitted_hbos, "new")
        learned = registry.register(
            fitted_hbos, "new", parent="new@1", label_sha256=SHA, method="semi_supervised"
        )
        assert (first.parent, first.method) == (None, None)
        again = registry.info("new", learned.version)
        assert (again.parent, again.label_sha256, again.method) == ("new@1", SHA, "semi_supervised")
        assert again.to_dict()["parent"] == "new@1"
    finally:
        registry.catalog.drop()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"parent": "new@latest"}, "by number"),
        ({"parent": "bad/name@1"}, "model name"),
        ({"label_sha256": "xyz"}, "64 hex digits"),
        ({"method": "Semi Supervised"}, "lower-case"),
    ],
)
def test_bad_lineage_is_refused(
    tmp_path: Path, fitted_hbos: Any, fields: Any, message: str
) -> None:
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    with pytest.raises(ConfigError, match=message):
        registry.register(fitted_hbos, "new", **fields)
    assert registry.versions() == []
    registry.close()


def test_adp_models_show_prints_the_lineage(tmp_path: Path, fitted_hbos: Any) -> None:
    from adp.models.cli import models

    url, store = f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store")
    registry = ModelRegistry(url, store)
    registry.register(fitted_hbos, "new")
    registry.register(fitted_hbos, "new", parent="new@1", label_sha256=SHA, method="threshold")
    registry.close()
    result = CliRunner().invoke(models, ["show", "new@2", "--json", "--url", url, "--store", store])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert (shown["parent"], shown["label_sha256"], shown["method"]) == ("new@1", SHA, "threshold")

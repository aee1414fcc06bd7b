"""The model registry round-trips fitted detectors through SQLite and PostgreSQL and refuses
artifacts that do not match the SHA-256 it recorded."""

from __future__ import annotations

import getpass
import hashlib
import pickle
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import sqlalchemy as sa

from adp.errors import (
    ConfigError,
    ModelIntegrityError,
    ModelNotFoundError,
    NotFittedError,
    SourceError,
)


def _scores(detector: Any, ddf: Any) -> np.ndarray:
    return detector.decision_function(ddf).compute().to_numpy()


def test_round_trip_versions_metadata_and_scores(registry, fitted, small_ddf):
    first = registry.register(
        fitted,
        "sensors",
        {"team": "ops"},
        source="s3://lake/sensors/",
        fingerprint="frame-sha256:abc",
        metrics={"metric": "roc_auc", "score": np.float64(0.93), "bad": float("nan")},
    )
    second = registry.register(fitted, "sensors")
    other = registry.register(fitted, "pumps")

    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.ref == "sensors@1"
    stored = Path(first.artifact_uri).read_bytes()
    assert hashlib.sha256(stored).hexdigest() == first.sha256 == second.sha256
    assert first.size_bytes == len(stored)

    info = registry.info("sensors", 1)
    assert info.detector == "isolation_forest"
    assert info.params == {"n_estimators": 40, "random_state": 0}
    assert info.features == ["a", "b", "c", "d"]
    assert info.sample_rows == fitted.n_samples_fit_ == 1200
    assert info.source == "s3://lake/sensors/"
    assert info.fingerprint == "frame-sha256:abc"
    assert info.metrics == {"metric": "roc_auc", "score": 0.93, "bad": None}
    assert info.metadata == {"team": "ops"}
    assert info.created_by == getpass.getuser()
    assert info.created_at.tzinfo is not None
    assert info.versions["dask"] == dask.__version__
    assert info.stage == "none"

    loaded = registry.get("sensors")  # latest
    assert loaded.is_fitted and loaded.features_ == fitted.features_
    np.testing.assert_array_equal(_scores(loaded, small_ddf), _scores(fitted, small_ddf))
    assert registry.get("sensors", 1).name == "isolation_forest"

    assert [v.ref for v in registry.versions()] == ["pumps@1", "sensors@1", "sensors@2"]
    assert [v.ref for v in registry.versions("sensors")] == ["sensors@1", "sensors@2"]


def test_promote_archives_the_previous_production_version(registry, fitted):
    registry.register(fitted, "m")
    registry.register(fitted, "m")
    registry.promote("m", 1, "production")
    assert registry.info("m", "production").version == 1

    promoted = registry.promote("m", 2, "production")
    assert promoted.stage == "production" and promoted.stage_changed_at is not None
    assert registry.info("m", 1).stage == "archived"
    assert [v.ref for v in registry.versions(stage="production")] == ["m@2"]
    assert registry.load("m@production").is_fitted
    assert registry.load("m@1").is_fitted

    registry.promote("m", 1, "staging")
    assert registry.info("m", 2).stage == "production"
    with pytest.raises(ConfigError, match="unknown stage 'live'"):
        registry.promote("m", 1, "live")


def _malicious_pickle(marker: Path) -> bytes:
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    return pickle.dumps(Exploit())


def test_a_tampered_artifact_is_refused_before_deserializing(registry, fitted, tmp_path):
    version = registry.register(fitted, "guarded")
    marker = tmp_path / "pwned"
    Path(version.artifact_uri).write_bytes(_malicious_pickle(marker))

    with pytest.raises(ModelIntegrityError, match="refusing to load model guarded@1") as err:
        registry.get("guarded", 1)
    assert version.sha256 in str(err.value)
    assert not marker.exists(), "the tampered artifact was deserialized"

    with pytest.raises(ModelIntegrityError):
        registry.load("guarded@latest")
    assert not marker.exists()


def test_a_missing_artifact_and_unknown_models_say_what_exists(registry, fitted):
    version = registry.register(fitted, "gone")
    Path(version.artifact_uri).unlink()
    with pytest.raises(SourceError, match="is missing"):
        registry.get("gone")
    with pytest.raises(ModelNotFoundError, match=r"registered models: gone"):
        registry.get("nope")
    with pytest.raises(ModelNotFoundError, match=r"has no version 7; its versions: 1 \(none\)"):
        registry.info("gone", 7)
    with pytest.raises(ModelNotFoundError, match="no a version in 'production'"):
        registry.info("gone", "production")


def test_register_rejects_what_cannot_be_registered(registry, fitted):
    import adp

    with pytest.raises(NotFittedError, match="fit"):
        registry.register(adp.create_detector("iforest"), "x")
    with pytest.raises(ConfigError, match="model name"):
        registry.register(fitted, "../escape")
    with pytest.raises(ConfigError, match="model name"):
        registry.register(fitted, "a@b")
    with pytest.raises(ConfigError, match="adp.Detector"):
        registry.register(object(), "x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="invalid model version"):
        registry.info("x", "newest")
    assert registry.versions() == []


def test_a_lost_version_race_retries_and_cleans_up(tmp_path, fitted, monkeypatch):
    from adp.models.api import ModelRegistry

    registry = ModelRegistry(f"sqlite:///{tmp_path / 'm.db'}", str(tmp_path / "store"))
    registry.register(fitted, "race")
    real = registry.catalog.next_version
    calls = []

    def stale(conn, name):  # the first answer is a version another process already took
        calls.append(name)
        return 1 if len(calls) == 1 else real(conn, name)

    monkeypatch.setattr(registry.catalog, "next_version", stale)
    version = registry.register(fitted, "race")
    assert version.version == 2 and len(calls) == 2
    files = sorted(p.name for p in (tmp_path / "store" / "race").iterdir())
    assert files == sorted(Path(v.artifact_uri).name for v in registry.versions("race"))


def test_identifiers_are_validated(tmp_path):
    from adp.models.api import ModelRegistry

    with pytest.raises(ConfigError, match="table prefix .* is not a plain SQL identifier"):
        ModelRegistry(f"sqlite:///{tmp_path / 'x.db'}", str(tmp_path), table_prefix="a; drop")
    with pytest.raises(ConfigError, match="invalid model registry URL"):
        ModelRegistry("not a url", str(tmp_path))


def test_module_functions_use_the_configured_registry(tmp_path, fitted):
    import adp

    url = f"sqlite:///{tmp_path / 'cfg.db'}"
    with dask.config.set({"adp.models.url": url, "adp.models.store": str(tmp_path / "art")}):
        version = adp.models.register(fitted, "configured", source="mem")
        assert version.artifact_uri.startswith(str(tmp_path / "art"))
        assert [v.ref for v in adp.models.list()] == ["configured@1"]
        adp.models.promote("configured", 1, "production")
        assert adp.models.get("configured", "production").is_fitted
        assert adp.models.load_detector("configured@1").is_fitted
        assert adp.models.info("configured@1").stage == "production"
    with sa.create_engine(url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from adp_model_versions")).scalar() == 1


@pytest.mark.slow
def test_artifacts_round_trip_through_s3(tmp_path, fitted, small_ddf):
    from adp.bench.reading import start_moto
    from adp.models.api import ModelRegistry

    server, s3 = start_moto()
    try:
        bucket = s3.bucket("models")
        registry = ModelRegistry(
            f"sqlite:///{tmp_path / 's3.db'}", f"s3://{bucket}/adp", s3.storage_options
        )
        version = registry.register(fitted, "remote")
        assert version.artifact_uri.startswith(f"s3://{bucket}/adp/remote/v1-")
        loaded = registry.get("remote")
        np.testing.assert_array_equal(_scores(loaded, small_ddf), _scores(fitted, small_ddf))

        s3.fs().pipe_file(version.artifact_uri, b"tampered")
        with pytest.raises(ModelIntegrityError):
            registry.get("remote")
    finally:
        server.stop()


def _point_row_at(registry, name: str, uri: str) -> None:
    t = registry.catalog.table
    with registry.catalog.begin() as conn:
        conn.execute(t.update().where(t.c.name == name).values(artifact_uri=uri))


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink"])
def test_a_row_pointing_outside_the_store_is_refused_unread(registry, fitted, tmp_path, how):
    """Whoever can write the registry database cannot make it unpickle bytes from elsewhere,
    even bytes whose SHA-256 they also wrote into the row."""
    version = registry.register(fitted, "escape")
    marker = tmp_path / "pwned"
    evil = tmp_path / "outside" / "evil.adpmodel"
    evil.parent.mkdir()
    payload = _malicious_pickle(marker)
    evil.write_bytes(payload)
    t = registry.catalog.table
    with registry.catalog.begin() as conn:  # the digest matches the planted file
        conn.execute(
            t.update()
            .where(t.c.name == "escape")
            .values(sha256=hashlib.sha256(payload).hexdigest())
        )
    store = Path(registry.store.root)
    if how == "absolute":
        uri = str(evil)
    elif how == "dotdot":
        uri = f"{store}/escape/../../outside/evil.adpmodel"
    else:
        link = store / "escape" / "link.adpmodel"
        link.symlink_to(evil)
        uri = str(link)
    _point_row_at(registry, "escape", uri)
    with pytest.raises(ModelIntegrityError, match="not inside the model store") as err:
        registry.get("escape", version.version)
    assert uri in str(err.value)
    assert not marker.exists(), "bytes outside the store were deserialized"


def test_an_object_of_another_type_is_refused(registry, fitted):
    version = registry.register(fitted, "typed")
    data = pickle.dumps({"not": "a detector"})
    Path(version.artifact_uri).write_bytes(data)
    t = registry.catalog.table
    with registry.catalog.begin() as conn:
        conn.execute(
            t.update().where(t.c.name == "typed").values(sha256=hashlib.sha256(data).hexdigest())
        )
    with pytest.raises(ModelIntegrityError, match="holds a builtins.dict, not a BaseDetector"):
        registry.get("typed")


def test_a_source_password_is_never_stored(registry, fitted):
    secret = "Pl4nted-Pw"
    version = registry.register(
        fitted, "sourced", source=f"postgresql+psycopg://adp:{secret}@db:5432/lake"
    )
    assert version.source == "postgresql+psycopg://adp:***@db:5432/lake"
    t = registry.catalog.table
    with registry.catalog.engine.connect() as conn:
        rows = [str(tuple(r)) for r in conn.execute(sa.select(t))]
    assert rows and not any(secret in row for row in rows)

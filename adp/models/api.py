"""The model registry: register fitted detectors, list, load and promote their versions.

Each version is two things: the artifact (the fitted :class:`adp.Detector`, pickled, on a
lake path: ``adp.models.store``, default ``<adp.state-dir>/models``, local or ``s3://...``)
and a row of metadata in a SQL database (``adp.models.url``, default
``sqlite:///<adp.state-dir>/models.db``): version, detector and parameters, features,
training source and its fingerprint, sample size, search metrics, library versions, who
registered it and when, and its stage.

Loading reads the artifact's bytes and checks their SHA-256 against the database *before*
deserializing anything (:func:`adp.models.store.load_verified`); an artifact that does not
verify is refused with :class:`adp.errors.ModelIntegrityError`. That check is what makes
pickle acceptable here.
"""

from __future__ import annotations

import datetime as dt
import getpass
import platform
import re
from functools import lru_cache
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from adp.detect.detector import BaseDetector
from adp.errors import ConfigError, NotFittedError
from adp.models.metadata import (
    Catalog,
    ModelVersion,
    check_model_name,
    check_stage,
    jsonable,
)
from adp.models.store import ArtifactStore, load_verified, serialize, sha256_hex
from adp.redact import redact_url

_LIBRARIES = (
    "adp",
    "dask",
    "distributed",
    "numpy",
    "pandas",
    "scikit-learn",
    "scipy",
    "pyod",
    "cloudpickle",
)
_INSERT_ATTEMPTS = 5
_SHA256 = re.compile(r"[0-9a-f]{64}")
_METHOD = re.compile(r"[a-z][a-z0-9_]{0,63}")


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a fitted detector depends on."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return "unknown"


def parse_ref(ref: str) -> tuple[str, int | str]:
    """Split ``"name@version"`` (``version``: a number, ``latest`` or a stage).

    ``"name"`` alone means the latest version.
    """
    name, sep, version = str(ref).strip().partition("@")
    check_model_name(name)
    if sep and not version:
        raise ConfigError(f"model reference {ref!r} ends with '@': add a version, e.g. {name}@1")
    if not sep:
        return name, "latest"
    if version.isascii() and version.isdigit():
        if int(version) > 2**63 - 1:  # a database integer's range (OverflowError otherwise)
            raise ConfigError(f"model reference {ref!r}: version {version} is out of range")
        return name, int(version)
    return name, version


class ModelRegistry:
    """A model registry: a :class:`~adp.models.metadata.Catalog` plus an artifact store.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL of the metadata database; default ``adp.models.url``, else
        ``sqlite:///<adp.state-dir>/models.db``.
    store : str, optional
        Artifact root (local folder or fsspec URL); default ``adp.models.store``, else
        ``<adp.state-dir>/models``.
    storage_options : dict, optional
        fsspec options for a remote store (credentials, endpoint).
    table_prefix : str
        Prefix of the metadata table's name.
    schema : str, optional
        Database schema for the table (PostgreSQL).
    """

    def __init__(
        self,
        url: str | None = None,
        store: str | None = None,
        storage_options: dict[str, Any] | None = None,
        table_prefix: str = "adp_",
        schema: str | None = None,
    ) -> None:
        url, store = _defaults(url, store)
        self.catalog = Catalog(url, table_prefix=table_prefix, schema=schema)
        self.store = ArtifactStore(store, storage_options)

    def __repr__(self) -> str:
        return f"ModelRegistry({self.catalog!r}, {self.store!r})"

    def close(self) -> None:
        self.catalog.close()

    def register(
        self,
        detector: BaseDetector,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        source: str | None = None,
        fingerprint: str | None = None,
        metrics: dict[str, Any] | None = None,
        stage: str = "none",
        parent: str | None = None,
        label_sha256: str | None = None,
        method: str | None = None,
    ) -> ModelVersion:
        """Store a fitted detector as the next version of ``name``.

        Parameters
        ----------
        detector : BaseDetector
            Fitted (:meth:`adp.Detector.fit`).
        name : str
            Model name: letters, digits, ``.``, ``_``, ``-``.
        metadata : dict, optional
            Free-form, JSON-serializable notes kept with the version.
        source : str, optional
            Where the training data came from (a URI, a table); a password in it is
            stored as ``***`` (:func:`adp.redact.redact_url`).
        fingerprint : str, optional
            A fingerprint of that data (:func:`adp.models.fingerprint_frame` or
            :func:`adp.models.fingerprint_files`).
        metrics : dict, optional
            Search or evaluation figures (:meth:`adp.search.SearchResult.metrics`).
        stage : str
            Initial stage (``"none"``).
        parent : str, optional
            Lineage: the registered version this one was learned from, ``name@version``.
        label_sha256 : str, optional
            Lineage: the SHA-256 (64 hex digits) of the label set it learned from
            (:func:`adp.feedback.labels.label_set_sha256`).
        method : str, optional
            Lineage: how it was learned (``"threshold"``, ``"semi_supervised"``,
            ``"ensemble_weights"``).

        Returns
        -------
        ModelVersion
        """
        check_model_name(name)
        check_stage(stage)
        parent, label_sha256, method = check_lineage(parent, label_sha256, method)
        if not isinstance(detector, BaseDetector):
            raise ConfigError(
                f"register() takes an adp.Detector, got {type(detector).__name__}; "
                "create one with adp.create_detector(...) and fit it"
            )
        if not detector.is_fitted:
            raise NotFittedError(
                f"detector {detector.name!r} is not fitted: call fit(ddf) before registering"
            )
        data = serialize(detector)
        digest = sha256_hex(data)
        last_error: Exception | None = None
        for _ in range(_INSERT_ATTEMPTS):
            with self.catalog.begin() as conn:
                version = self.catalog.next_version(conn, name)
            record = ModelVersion(
                name=name,
                version=version,
                stage=stage,
                detector=detector.name,
                params=jsonable(detector.params),
                contamination=detector.contamination,
                features=list(detector.features_),
                artifact_uri=self.store.new_uri(name, version),
                sha256=digest,
                size_bytes=len(data),
                created_at=dt.datetime.now(dt.UTC),
                created_by=_user(),
                source=redact_url(source),
                fingerprint=fingerprint,
                sample_rows=getattr(detector, "n_samples_fit_", None),
                rows_seen=getattr(detector, "n_rows_seen_", None),
                metrics=jsonable(metrics or {}),
                versions=library_versions(),
                metadata=jsonable(metadata or {}),
                parent=parent,
                label_sha256=label_sha256,
                method=method,
            )
            self.store.write(record.artifact_uri, data)  # bytes first, then the row
            try:
                with self.catalog.begin() as conn:
                    self.catalog.insert(conn, record)
            except sa.exc.IntegrityError as exc:  # another registration took this version
                self.store.delete(record.artifact_uri)
                last_error = exc
                continue
            except BaseException:
                self.store.delete(record.artifact_uri)
                raise
            return record
        raise ConfigError(
            f"could not register {name!r}: {_INSERT_ATTEMPTS} concurrent registrations took "
            f"every version number tried ({last_error})"
        )

    def versions(self, name: str | None = None, stage: str | None = None) -> list[ModelVersion]:
        """Registered versions (of ``name``, in ``stage``), by name then version."""
        return self.catalog.versions(name, stage)

    def info(self, name: str, version: int | str = "latest") -> ModelVersion:
        """The metadata of one version (``version``: a number, ``"latest"`` or a stage)."""
        if "@" in name and version == "latest":
            name, version = parse_ref(name)
        return self.catalog.resolve(check_model_name(name), version)

    def get(self, name: str, version: int | str = "latest") -> BaseDetector:
        """Load a registered detector, fitted, after verifying its artifact's SHA-256.

        Raises
        ------
        adp.errors.ModelNotFoundError
            For an unknown name, version or stage.
        adp.errors.ModelIntegrityError
            When the registry's row points outside the store (nothing is read), the
            artifact does not match the recorded SHA-256 (nothing is deserialized), or it
            is not a Detector.
        adp.errors.SourceError
            When the artifact is missing from the store.
        """
        record = self.info(name, version)
        data = self.store.read(record.artifact_uri)  # refuses a location outside the store
        where = f"model {record.ref} at {record.artifact_uri}"
        detector: BaseDetector = load_verified(data, record.sha256, where, BaseDetector)
        return detector

    def load(self, ref: str) -> BaseDetector:
        """Load ``"name@version"`` (or ``name``, ``name@latest``, ``name@production``)."""
        name, version = parse_ref(ref)
        return self.get(name, version)

    def promote(
        self, name: str, version: int | str, stage: str, archive_existing: bool = True
    ) -> ModelVersion:
        """Move a version to ``stage`` (``none``, ``staging``, ``production``, ``archived``).

        With ``archive_existing`` (the default), promoting to ``production`` archives the
        versions of ``name`` that were in production, so one version serves at a time.
        """
        record = self.info(name, version)
        return self.catalog.set_stage(record.name, record.version, stage, archive_existing)


def check_lineage(
    parent: str | None, label_sha256: str | None, method: str | None
) -> tuple[str | None, str | None, str | None]:
    """Check the lineage fields of a registration; return them (``parent`` as
    ``name@version``).

    Raises
    ------
    adp.errors.ConfigError
        Naming the field: a parent that is not ``name@<number>``, a label hash that is not
        64 hex digits, a method that is not a short name.
    """
    if parent is not None:
        name, version = parse_ref(parent)
        if not isinstance(version, int):
            raise ConfigError(
                f"lineage parent {parent!r} must name a version by number, e.g. {name}@3"
            )
        parent = f"{name}@{version}"
    if label_sha256 is not None and not _SHA256.fullmatch(str(label_sha256)):
        raise ConfigError(
            f"lineage label_sha256 {label_sha256!r} is not a SHA-256: give 64 hex digits"
        )
    if method is not None and not _METHOD.fullmatch(str(method)):
        raise ConfigError(
            f"lineage method {method!r} is not valid: use 1-64 lower-case letters, digits or _"
        )
    return parent, label_sha256, method


def _defaults(url: str | None, store: str | None) -> tuple[str, str]:
    from adp.config import settings

    cfg = settings()
    state_dir = Path(cfg.state_dir).expanduser()
    url = url or cfg.models.url or f"sqlite:///{(state_dir / 'models.db').resolve()}"
    store = store or cfg.models.store or str((state_dir / "models").resolve())
    from adp.paths import is_local, local_path

    if is_local(store):
        store = str(local_path(store).resolve())
    return url, store


@lru_cache(maxsize=8)
def _cached_registry(url: str, store: str) -> ModelRegistry:
    return ModelRegistry(url, store)


def default_registry() -> ModelRegistry:
    """The registry configured by ``adp.models.url`` and ``adp.models.store``."""
    return _cached_registry(*_defaults(None, None))


def register(
    detector: BaseDetector,
    name: str,
    metadata: dict[str, Any] | None = None,
    *,
    source: str | None = None,
    fingerprint: str | None = None,
    metrics: dict[str, Any] | None = None,
    stage: str = "none",
    registry: ModelRegistry | None = None,
    parent: str | None = None,
    label_sha256: str | None = None,
    method: str | None = None,
) -> ModelVersion:
    """Register a fitted detector as the next version of ``name``.

    See :meth:`ModelRegistry.register` (``parent``, ``label_sha256`` and ``method`` are
    its lineage fields); ``registry`` defaults to the configured one.

    Examples
    --------
    >>> det = adp.create_detector("iforest", random_state=0).fit(ddf)  # doctest: +SKIP
    >>> adp.models.register(det, "sensors", source="s3://lake/sensors/")  # doctest: +SKIP
    ModelVersion(name='sensors', version=1, ...)
    """
    return (registry or default_registry()).register(
        detector,
        name,
        metadata,
        source=source,
        fingerprint=fingerprint,
        metrics=metrics,
        stage=stage,
        parent=parent,
        label_sha256=label_sha256,
        method=method,
    )


def list_models(
    name: str | None = None, stage: str | None = None, *, registry: ModelRegistry | None = None
) -> list[ModelVersion]:
    """Registered versions (``adp.models.list``), by name then version."""
    return (registry or default_registry()).versions(name, stage)


def get(
    name: str, version: int | str = "latest", *, registry: ModelRegistry | None = None
) -> BaseDetector:
    """Load a registered, fitted detector after verifying its SHA-256 (see
    :meth:`ModelRegistry.get`). ``name`` may be a ``name@version`` reference."""
    return (registry or default_registry()).get(name, version)


def info(
    name: str, version: int | str = "latest", *, registry: ModelRegistry | None = None
) -> ModelVersion:
    """The metadata of one registered version, without loading the artifact."""
    return (registry or default_registry()).info(name, version)


def promote(
    name: str,
    version: int | str,
    stage: str,
    *,
    archive_existing: bool = True,
    registry: ModelRegistry | None = None,
) -> ModelVersion:
    """Move a version to a stage (see :meth:`ModelRegistry.promote`)."""
    return (registry or default_registry()).promote(name, version, stage, archive_existing)


def load_detector(ref: str, *, registry: ModelRegistry | None = None) -> BaseDetector:
    """Load the detector a job spec names as ``detector: {model: "name@version"}``.

    Parameters
    ----------
    ref : str
        ``name@<number>``, ``name@latest``, ``name@<stage>`` or ``name`` (latest).

    Returns
    -------
    Detector
        Fitted; verified against the registry before it was deserialized.
    """
    return (registry or default_registry()).load(ref)


__all__ = [
    "ModelRegistry",
    "check_lineage",
    "default_registry",
    "get",
    "info",
    "library_versions",
    "list_models",
    "load_detector",
    "parse_ref",
    "promote",
    "register",
]

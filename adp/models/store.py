"""Model artifacts on a lake path (local or any fsspec URL), checked by SHA-256.

An artifact is a fitted :class:`adp.Detector` serialized with cloudpickle. Unpickling runs
code chosen by whoever wrote the bytes, so an artifact is **never** deserialized before its
SHA-256 matches the digest recorded in the registry's database when the model was
registered (:func:`load_verified`): the database is the root of trust, the store only holds
bytes. Someone who can rewrite the store but not the database cannot get code run; someone
who can write both can, so give the database the stricter permissions. Pickle is acceptable
here only because of this check; never point the registry at artifacts from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle  # noqa: S403 - loaded only after the digest verifies, see the module docstring
import uuid
from typing import Any

import cloudpickle
import fsspec

from adp.errors import ConfigError, ModelIntegrityError, SourceError

ARTIFACT_SUFFIX = ".adpmodel"


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lower-case hex digits."""
    return hashlib.sha256(data).hexdigest()


def serialize(obj: Any) -> bytes:
    """Serialize a fitted detector (cloudpickle, so locally defined scorers survive)."""
    return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def load_verified(data: bytes, expected_sha256: str, where: str) -> Any:
    """Deserialize ``data`` only if its SHA-256 equals ``expected_sha256``.

    Parameters
    ----------
    data : bytes
        The artifact as read from the store.
    expected_sha256 : str
        The digest recorded in the registry database.
    where : str
        How to name the artifact in errors (``name@version at <uri>``).

    Raises
    ------
    adp.errors.ModelIntegrityError
        When the digests differ; nothing has been deserialized.
    """
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, str(expected_sha256).lower()):
        raise ModelIntegrityError(
            f"refusing to load {where}: its SHA-256 is {actual}, but the registry recorded "
            f"{expected_sha256} when it was registered. The artifact was changed or replaced "
            "after registration; it was not deserialized. Register the model again from a "
            "trusted source."
        )
    return pickle.loads(data)  # noqa: S301 - verified against the registry just above


class ArtifactStore:
    """Reads and writes artifact bytes under a root folder or URL.

    Parameters
    ----------
    root : str
        A local folder or fsspec URL such as ``s3://models/adp``.
    storage_options : dict, optional
        fsspec options (credentials, ``client_kwargs``) for remote stores.
    """

    def __init__(self, root: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root = str(root).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.fs, self._root_path = fsspec.core.url_to_fs(self.root, **self.storage_options)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def new_uri(self, name: str, version: int) -> str:
        """A fresh location for version ``version`` of ``name``.

        A random token makes every attempt's path unique, so a registration that loses a
        race for a version number (and deletes what it wrote) never touches another's file.
        """
        return f"{self.root}/{name}/v{version}-{uuid.uuid4().hex[:12]}{ARTIFACT_SUFFIX}"

    def _path(self, uri: str) -> str:
        if not uri.startswith(self.root + "/"):
            raise ConfigError(f"artifact {uri!r} is not under the model store {self.root!r}")
        return self._root_path.rstrip("/") + uri[len(self.root) :]

    def write(self, uri: str, data: bytes) -> None:
        """Write ``data`` at ``uri``, all or nothing.

        Local files go to a temporary name in the same folder and are renamed into place;
        object stores (S3) make a single PUT visible atomically.
        """
        path = self._path(uri)
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if "file" in _protocols(self.fs):
            tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
            try:
                with self.fs.open(tmp, "wb") as f:
                    f.write(data)
                self.fs.mv(tmp, path)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
        else:
            self.fs.pipe_file(path, data)

    def read(self, uri: str) -> bytes:
        """The bytes at ``uri`` (recorded at registration; the store may have moved since).

        Raises
        ------
        adp.errors.SourceError
            When the artifact is missing or unreadable.
        """
        try:
            fs, path = fsspec.core.url_to_fs(uri, **self.storage_options)
            return bytes(fs.cat_file(path))
        except FileNotFoundError:
            raise SourceError(
                f"model artifact {uri!r} is missing; it was deleted or moved after registration"
            ) from None
        except OSError as exc:
            raise SourceError(f"cannot read model artifact {uri!r}: {exc}") from exc

    def delete(self, uri: str) -> None:
        """Remove ``uri`` if it exists (used to undo a registration that failed)."""
        path = self._path(uri)
        if self.fs.exists(path):
            self.fs.rm(path)


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


__all__ = [
    "ARTIFACT_SUFFIX",
    "ArtifactStore",
    "load_verified",
    "serialize",
    "sha256_hex",
]

"""Model artifacts on a lake path (local or any fsspec URL), checked by SHA-256.

An artifact is a fitted :class:`adp.Detector` serialized with cloudpickle. Unpickling runs
code chosen by whoever wrote the bytes, so loading takes three checks, in this order, and
deserializes nothing until all of the first two pass:

1. **Inside the store.** The artifact's location (from the registry database) must lie
   inside the store's root, after resolving ``..`` and symbolic links
   (:meth:`ArtifactStore.read`); a row pointing anywhere else is refused without reading it.
2. **Digest.** Its SHA-256 must match the digest recorded in the registry's database when
   the model was registered (:func:`load_verified`).
3. **Type.** The object must be of the expected class (an :class:`adp.Detector`).

Someone who can rewrite the store but not the database cannot get code run; someone who can
write the database alone can point a row only at bytes the store already holds; someone who
can write both can, so give both strict permissions. Pickle is acceptable here only because
of these checks; never point the registry at artifacts from elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle  # noqa: S403 - loaded only after the digest verifies, see the module docstring
import posixpath
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


def load_verified(
    data: bytes, expected_sha256: str, where: str, expected_type: type | None = None
) -> Any:
    """Deserialize ``data`` only if its SHA-256 equals ``expected_sha256``.

    Parameters
    ----------
    data : bytes
        The artifact as read from the store.
    expected_sha256 : str
        The digest recorded in the registry database.
    where : str
        How to name the artifact in errors (``name@version at <uri>``).
    expected_type : type, optional
        The class the object must be an instance of.

    Raises
    ------
    adp.errors.ModelIntegrityError
        When the digests differ (nothing has been deserialized), or the object is not an
        ``expected_type``.
    """
    actual = sha256_hex(data)
    if not hmac.compare_digest(actual, str(expected_sha256).lower()):
        raise ModelIntegrityError(
            f"refusing to load {where}: its SHA-256 is {actual}, but the registry recorded "
            f"{expected_sha256} when it was registered. The artifact was changed or replaced "
            "after registration; it was not deserialized. Register the model again from a "
            "trusted source."
        )
    obj = pickle.loads(data)  # noqa: S301 - verified against the registry just above
    if expected_type is not None and not isinstance(obj, expected_type):
        raise ModelIntegrityError(
            f"refusing {where}: it holds a {type(obj).__module__}.{type(obj).__qualname__}, "
            f"not a {expected_type.__qualname__}; register the model again"
        )
    return obj


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

    def inside(self, uri: str) -> str:
        """The store's path of ``uri``, after checking that it lies inside the store.

        ``..`` segments are resolved, and for a local store symbolic links too, before
        comparing with the (equally resolved) root; nothing is read.

        Raises
        ------
        adp.errors.ModelIntegrityError
            Naming ``uri`` and the store, when it lies outside the store's root.
        """
        from adp.paths import is_local, local_path, protocol_of

        refused = ModelIntegrityError(
            f"refusing model artifact {uri!r}: it is not inside the model store "
            f"{self.root!r}. The registry database points outside the store (it was altered "
            "or the store moved); nothing was read. Register the model again"
        )
        uri = str(uri)
        if is_local(self.root):
            if not is_local(uri):
                raise refused
            root = local_path(self.root).resolve()
            target = local_path(uri).resolve()
            if target == root or not target.is_relative_to(root):
                raise refused
            return str(target)
        if protocol_of(uri) != protocol_of(self.root) or not uri.startswith(self.root + "/"):
            raise refused
        relative = uri[len(self.root) + 1 :]
        normal = posixpath.normpath(relative)
        if normal != relative or normal.startswith(("..", "/")) or "/../" in f"/{normal}/":
            raise refused
        return self._root_path.rstrip("/") + "/" + normal

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
        """The bytes at ``uri``, which must lie inside the store (:meth:`inside`).

        Raises
        ------
        adp.errors.ModelIntegrityError
            When ``uri`` is outside the store; nothing is read.
        adp.errors.SourceError
            When the artifact is missing or unreadable.
        """
        path = self.inside(uri)
        try:
            return bytes(self.fs.cat_file(path))
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

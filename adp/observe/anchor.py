"""A second store for the audit trail's signed checkpoints: a folder or an S3 bucket.

The checkpoint file in the state directory sits on the same host as the writer; an anchor
puts the same signed checkpoints where the audit database's writers (and an attacker who
holds only that database) cannot change them: another disk, or an S3 bucket (ideally with
versioning or object lock). Every checkpoint is one small JSON object, never replaced::

    <anchor>/<log id>/<seq, 12 digits>.json   {"log", "seq", "hash", "time", "sig", "key"}

Writers add one on every append when ``adp.audit.anchor`` is set, and ``adp audit anchor
--to URI`` exports the current one. ``adp audit verify --anchor URI`` reads them all, checks
each signature with the public key, and requires every anchored ``(seq, hash)`` to be in the
chain and the chain to reach the newest
(:func:`adp.observe.checkpoint.anchored_heads`): a record rewritten, deleted, inserted or cut off
behind an anchored checkpoint fails verification.

Write-once is enforced, not only a convention: a checkpoint object is created with one
conditional PUT (``If-None-Match: *``, the request :mod:`adp.io.staging` commits a manifest
with for ``mode="error"``), and a local file with an exclusive create, so no ADP writer can
replace one that exists (a store that ignores the condition, or a bucket whose policy or
object lock does not protect it, is only as safe as that store).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import fsspec

from adp.errors import AuditError
from adp.redact import redact_url

__all__ = ["Anchor"]


class Anchor:
    """Signed checkpoints in a folder or under an fsspec URL (``s3://bucket/prefix``).

    Parameters
    ----------
    uri : str
        A local folder or fsspec URL.
    storage_options : dict, optional
        fsspec options (credentials, ``client_kwargs.endpoint_url``), checked like every
        other endpoint (:func:`adp.paths.check_storage_options`).

    Raises
    ------
    adp.errors.AuditError
        When ``uri`` cannot be opened.
    """

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        from adp.paths import check_storage_options, is_local, local_path

        check_storage_options(storage_options)
        self.uri = str(uri).rstrip("/")
        self.shown = str(redact_url(self.uri))
        if is_local(self.uri):
            self.uri = str(local_path(self.uri).resolve())
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.uri, **dict(storage_options or {}))
        except (ValueError, ImportError, OSError) as exc:
            raise AuditError(f"cannot open the audit anchor {self.shown}: {exc}") from exc
        self.root = self.root.rstrip("/")
        self._local = is_local(self.uri)

    def __repr__(self) -> str:
        return f"Anchor({self.shown!r})"

    def _path(self, log_id: str, seq: int) -> str:
        return f"{self.root}/{log_id}/{seq:012d}.json"

    def put(self, entry: Mapping[str, Any]) -> None:
        """Write one signed checkpoint, never over an existing one: the object for the
        same seq, if any, is kept as it is (:meth:`create`).

        Raises
        ------
        adp.errors.AuditError
            When the anchor cannot be written: the audited action does not run.
        """
        path = self._path(str(entry["log"]), int(entry["seq"]))
        data = json.dumps(dict(entry), sort_keys=True).encode()
        try:
            self.create(path, data)
        except FileExistsError:
            return  # write-once: what is there stays
        except (OSError, ValueError) as exc:
            raise AuditError(
                f"cannot write the audit checkpoint to the anchor {self.shown}: {exc}; check "
                "adp.audit.anchor and its storage options"
            ) from exc

    def create(self, path: str, data: bytes) -> None:
        """Create the object ``path`` (an fs path under the anchor) holding ``data``, or
        raise :class:`FileExistsError` when it exists: never replace it.

        On an object store this is one conditional PUT, ``If-None-Match: *`` (fsspec's
        ``pipe_file(..., mode="create")``, as :mod:`adp.io.staging` commits a manifest for
        ``mode="error"``); in a local folder, an exclusive create (``O_EXCL``).
        """
        if self._local:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            with self.fs.open(path, "xb") as f:
                f.write(data)
        else:  # no folders to make: a missing bucket is an error, never created
            self.fs.pipe_file(path, data, mode="create")

    def logs(self) -> list[str]:
        """The log ids the anchor holds checkpoints for."""
        try:
            if not self.fs.exists(self.root):
                return []
            return sorted(
                p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False)
            )
        except OSError as exc:
            raise AuditError(f"cannot list the audit anchor {self.shown}: {exc}") from exc

    def entries(self, log_id: str) -> list[dict[str, Any]]:
        """Every stored checkpoint of ``log_id`` (unverified), by ``seq``."""
        folder = f"{self.root}/{log_id}"
        try:
            if not self.fs.exists(folder):
                return []
            paths = sorted(p for p in self.fs.ls(folder, detail=False) if p.endswith(".json"))
            blobs = self.fs.cat(paths) if paths else {}
        except OSError as exc:
            raise AuditError(f"cannot read the audit anchor {self.shown}: {exc}") from exc
        out = []
        for path in paths:
            try:
                out.append(json.loads(blobs[path]))
            except (ValueError, KeyError) as exc:
                raise AuditError(
                    f"the audit anchor object {path} in {self.shown} is not JSON: it was altered"
                ) from exc
        return out

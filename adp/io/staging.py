"""Atomic folder outputs: a staging folder beside the output, committed at once.

A job never leaves a half-written dataset at its output location. Partitions are written
into a staging folder (see :mod:`adp.io.parts`); a manifest (``_adp_manifest.json``,
ignored by Parquet readers) is written last, then the staging folder is moved into place.
On a local or POSIX file system the move is one ``rename``; an existing dataset is replaced
only with ``mode="overwrite"``, and is moved aside first and deleted only after the new one
is in place. Object stores have no atomic rename: there the manifest is the commit marker,
written after every data file.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import fsspec

from adp.errors import OutputExistsError
from adp.io.parts import WrittenPart
from adp.paths import check_allowed, check_storage_options, is_local, local_path

MANIFEST = "_adp_manifest.json"
Mode = Literal["error", "overwrite"]


def _exists(uri: str, storage_options: dict[str, Any] | None) -> bool:
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    if not fs.exists(path):
        return False
    return not (fs.isdir(path) and not fs.ls(path))


def check_target(uri: str, mode: Mode, storage_options: dict[str, Any] | None = None) -> None:
    """Refuse, before any work, to write where data exists unless ``mode="overwrite"``.

    Raises
    ------
    adp.errors.OutputExistsError
        Naming the location and the fix.
    """
    check_allowed(uri)
    check_storage_options(storage_options)
    if mode != "overwrite" and _exists(uri, storage_options):
        raise OutputExistsError(
            f"output {uri!r} already holds data; choose another location or set "
            "output.mode: overwrite to replace it"
        )


class Staging:
    """A staging folder beside the output location, committed or removed as a whole.

    Parameters
    ----------
    uri : str
        The final output location.
    mode : {"error", "overwrite"}
        Whether an existing dataset at ``uri`` may be replaced at commit.
    storage_options : dict, optional
        fsspec options for remote stores.
    """

    def __init__(
        self, uri: str, mode: Mode = "error", storage_options: dict[str, Any] | None = None
    ) -> None:
        self.uri = uri.rstrip("/")
        self.mode = mode
        self.storage_options = storage_options
        parent, _, name = self.uri.rpartition("/")
        token = uuid.uuid4().hex[:12]
        self.root = (
            f"{parent}/.{name}.adp-staging-{token}" if parent else f".{name}.staging-{token}"
        )
        self.committed = False

    def path(self, *parts: str) -> str:
        """A location inside the staging folder."""
        return "/".join([self.root, *parts])

    def _fs(self) -> Any:
        return fsspec.core.url_to_fs(self.root, **(self.storage_options or {}))[0]

    def commit(self, data_folder: str, manifest: dict[str, Any]) -> None:
        """Move ``data_folder`` to the output location; the manifest is written last."""
        check_target(self.uri, self.mode, self.storage_options)
        fs = self._fs()
        if is_local(self.uri):
            with fs.open(f"{data_folder}/{MANIFEST}", "w") as f:
                json.dump(manifest, f, indent=2, default=str)
            _replace_local(local_path(data_folder), local_path(self.uri))
        else:
            # Object stores have no rename and no folder objects: copy the data files,
            # then write the manifest, which marks the dataset complete.
            if fs.exists(self.uri):
                fs.rm(self.uri, recursive=True)
            for source in sorted(fs.find(data_folder)):
                fs.copy(source, f"{self.uri}/{source.rsplit('/', 1)[-1]}")
            with fs.open(f"{self.uri}/{MANIFEST}", "w") as f:
                json.dump(manifest, f, indent=2, default=str)
        self.committed = True

    def cleanup(self) -> None:
        """Remove the staging folder (whatever is left of it)."""
        fs = self._fs()
        if fs.exists(self.root):
            fs.rm(self.root, recursive=True)

    @contextmanager
    def session(self) -> Iterator[Staging]:
        """Use the staging folder; it is removed on exit, committed or not."""
        try:
            yield self
        finally:
            self.cleanup()


def _replace_local(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.replace(source, target)
        return
    aside = target.with_name(f".{target.name}.adp-old-{uuid.uuid4().hex[:12]}")
    os.replace(target, aside)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def manifest_for(parts: Sequence[WrittenPart], **fields: Any) -> dict[str, Any]:
    """The manifest of a committed dataset: its files, rows and the job's figures."""
    return {
        "format": "adp-scores",
        "version": 1,
        "rows": sum(p.rows for p in parts),
        "files": [{**asdict(p), "path": p.path.rsplit("/", 1)[-1]} for p in parts],
        **fields,
    }


__all__ = ["MANIFEST", "Mode", "Staging", "check_target", "manifest_for"]

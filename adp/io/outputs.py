"""What an output location holds: the manifest of an ADP commit, its files, foreign files.

An ADP output folder holds ``_adp_manifest.json``, which lists every data file of the
committed dataset (``files``, each with ``path`` and ``rows``) and, on object stores, the
versioned prefix they live under (``prefix``, such as ``_adp_v/<version>/final``). The
manifest is the truth: :func:`committed_files` gives exactly the files it names, and
:func:`describe_output` tells ADP's files from foreign ones, which ``mode: overwrite``
never replaces.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import fsspec

MANIFEST = "_adp_manifest.json"
#: The folder of an object-store output that holds its versions (and staging).
VERSIONS = "_adp_v"


@dataclass(frozen=True)
class WrittenPart:
    """One written data file: its path, rows, bytes, flagged rows (if flagged) and the
    SHA-256 of its bytes (recorded in the manifest; a resumed job reuses a staged file
    only when it still verifies)."""

    path: str
    rows: int
    bytes: int
    anomalies: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class OutputState:
    """What an output location holds.

    Attributes
    ----------
    manifest : dict or None
        The manifest of the last ADP commit, if any.
    files : list of str
        Every file under the location, relative to it.
    foreign : list of str
        The files neither the manifest nor ADP's versions folder account for.
    """

    manifest: dict[str, Any] | None = None
    files: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @property
    def holds_data(self) -> bool:
        """Whether a commit with ``mode: error`` must be refused here."""
        return self.manifest is not None or bool(self.foreign)


def manifest_paths(manifest: dict[str, Any]) -> list[str]:
    """The data files a manifest names, relative to the output folder, in order."""
    prefix = str(manifest.get("prefix") or "").strip("/")
    out = []
    for entry in manifest.get("files") or []:
        path = str(entry["path"] if isinstance(entry, dict) else entry).lstrip("/")
        out.append(f"{prefix}/{path}" if prefix else path)
    return out


def _fs(uri: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, str(path).rstrip("/")


def read_manifest(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The manifest of the ADP output at ``uri``, or None when there is none (or it does
    not parse as a JSON object)."""
    fs, root = _fs(uri, storage_options)
    # Another job may have committed since this file system listed the folder (s3fs keeps
    # listings): a cached listing without the manifest must not hide it.
    fs.invalidate_cache(f"{root}/{MANIFEST}")
    try:
        with fs.open(f"{root}/{MANIFEST}", "rb") as f:
            manifest = json.loads(f.read())
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def describe_output(uri: str, storage_options: dict[str, Any] | None = None) -> OutputState:
    """List what ``uri`` holds and which of it an ADP commit accounts for."""
    fs, root = _fs(uri, storage_options)
    if not fs.exists(root):
        return OutputState()
    if not fs.isdir(root):
        name = root.rsplit("/", 1)[-1]
        return OutputState(files=[name], foreign=[name])
    files = sorted(p[len(root) + 1 :] for p in fs.find(root) if p.startswith(root + "/"))
    manifest = read_manifest(uri, storage_options) if MANIFEST in files else None
    known = set(manifest_paths(manifest)) if manifest else set()
    foreign = [
        f
        for f in files
        if f not in known
        and not (f == MANIFEST and manifest is not None)
        and not f.startswith(VERSIONS + "/")
    ]
    return OutputState(manifest, files, foreign)


def committed_files(uri: str, storage_options: dict[str, Any] | None = None) -> list[str] | None:
    """The full locations of the files the manifest at ``uri`` names, or None when ``uri``
    is not an ADP output."""
    manifest = read_manifest(uri, storage_options)
    if manifest is None or "files" not in manifest:
        return None
    base = uri.rstrip("/")
    return [f"{base}/{p}" for p in manifest_paths(manifest)]


def foreign_error_text(uri: str, foreign: list[str]) -> str:
    """The message refusing to overwrite ``uri`` because of ``foreign`` files."""
    count = len(foreign)
    noun = "file" if count == 1 else "files"
    return (
        f"output {uri!r} holds {count} {noun} that no ADP manifest lists (for example "
        f"{foreign[0]!r}); mode overwrite replaces only what an earlier ADP job committed: "
        "move them away or choose another output"
    )


__all__ = [
    "MANIFEST",
    "VERSIONS",
    "OutputState",
    "WrittenPart",
    "committed_files",
    "describe_output",
    "foreign_error_text",
    "manifest_paths",
    "read_manifest",
]

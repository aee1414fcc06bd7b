"""Atomic folder outputs: data is staged, then committed in one step.

A job never leaves a half-written dataset at its output location, and never replaces what
it did not write:

- **Local folders** stage beside the output (``.<name>.adp-staging-<token>``, inside the
  output's allowed root; when the output is an allowed root itself, under the state
  directory on the same file system). The manifest (``_adp_manifest.json``) is written
  into the staged folder, which one ``rename`` puts in place. With ``mode="error"`` that
  rename is the exclusive step: it fails when another job's dataset is there, so of two
  racing jobs exactly one commits and the other is told the winner's manifest. With
  ``mode="overwrite"`` the old dataset is moved into the staging folder first and removed
  after the new one is in place (a job killed in between has it put back by the next job
  or ``adp clean``).
- **Object stores** have no rename. The data is written under a new versioned prefix of
  the output (``<output>/_adp_v/<token>/final/part.NNNNN.parquet``); the commit is the
  single PUT of ``<output>/_adp_manifest.json`` naming that prefix (conditional, with
  ``If-None-Match: *``, for ``mode="error"``). Older versions are removed only after that
  PUT, so a reader following the manifest (:func:`adp.read`) sees the old or the new
  dataset whole, never neither.

``mode="overwrite"`` replaces only what an earlier ADP commit's manifest lists: a folder
holding other files is refused (:func:`check_target`). Every staging folder carries an owner
record and a heartbeat (:mod:`adp.io.owners`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import fsspec

from adp.errors import AccessDeniedError, ConfigError, OutputExistsError
from adp.io.guard import shown
from adp.io.outputs import (
    MANIFEST,
    VERSIONS,
    OutputState,
    WrittenPart,
    describe_output,
    foreign_error_text,
    manifest_paths,
    read_manifest,
)
from adp.io.owners import OWNER, Heartbeat, Owner, register, unregister
from adp.paths import check_allowed, check_storage_options, is_local, local_path

Mode = Literal["error", "overwrite"]
#: The marker in the name of a local staging folder beside its output.
STAGING_MARK = ".adp-staging-"
#: The file that marks a staging folder kept for a resumed attempt of its job.
RESUMABLE = "_adp_resumable"
_TOKEN = re.compile(r"[0-9a-f]{16}")


def resume_token(key: str) -> str:
    """The staging token of every attempt of the resumable job ``key`` (a digest: nothing
    of the key itself reaches a path)."""
    return hashlib.sha256(f"adp-resume:{key}".encode()).hexdigest()[:16]


#: Inside a local staging folder: where an overwritten dataset waits until the commit ends.
ASIDE = "old"


def check_target(uri: str, mode: Mode, storage_options: dict[str, Any] | None = None) -> None:
    """Refuse, before any work, to write where data exists unless ``mode="overwrite"``, and
    refuse to overwrite files that no ADP manifest lists.

    Raises
    ------
    adp.errors.OutputExistsError
        Naming the location (and a foreign file with their count) and the fix.
    """
    check_allowed(uri)
    check_storage_options(storage_options)
    _refuse_existing(uri, mode, describe_output(uri, storage_options))


def _refuse_existing(uri: str, mode: Mode, state: OutputState) -> None:
    if mode == "overwrite":
        if state.foreign:
            raise OutputExistsError(foreign_error_text(uri, state.foreign))
    elif state.holds_data:
        raise OutputExistsError(
            f"output {uri!r} already holds data; choose another location or set "
            "output.mode: overwrite to replace it"
        )


def _winner(manifest_uri: str, storage_options: dict[str, Any] | None) -> str:
    """How to name the manifest another job committed: its location, job and time."""
    folder = manifest_uri.rsplit("/", 1)[0]
    manifest = read_manifest(folder, storage_options) or {}
    said = ", ".join(
        f"{k} {manifest[k]}" for k in ("job", "created") if isinstance(manifest.get(k), str)
    )
    return f"{manifest_uri}" + (f" ({said})" if said else "")


def _lost(uri: str, manifest_uri: str, storage_options: dict[str, Any] | None) -> Exception:
    return OutputExistsError(
        f"output {uri!r} was committed by another job first (its manifest: "
        f"{_winner(manifest_uri, storage_options)}); nothing of this job was written there: "
        "choose another location or set output.mode: overwrite"
    )


def local_staging_root(target: Path, token: str) -> Path:
    """Where a local output stages: beside it when its folder is inside the allowed roots,
    else under the state directory (on the same file system, for the commit's rename).

    Raises
    ------
    adp.errors.ConfigError
        When the output is an allowed root itself and the state directory is on another
        file system.
    """
    try:
        check_allowed(str(target.parent))
        return target.parent / f".{target.name}{STAGING_MARK}{token}"
    except AccessDeniedError:
        pass
    from adp.config import settings

    state = settings().state_dir / "staging"
    state.mkdir(parents=True, exist_ok=True)
    device = os.stat(_existing(target)).st_dev
    if os.stat(state).st_dev != device:
        raise ConfigError(
            f"output {str(target)!r} is an allowed root itself, and ADP stages beside an "
            "output or in its state directory, which is on another file system: write to "
            f"a folder inside it, such as {str(target / 'scores')!r}"
        )
    return state / token


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Staging:
    """A staging area for one output, committed or removed as a whole.

    Parameters
    ----------
    uri : str
        The final output location.
    mode : {"error", "overwrite"}
        Whether an existing ADP dataset at ``uri`` may be replaced at commit.
    storage_options : dict, optional
        fsspec options for remote stores.
    base : str or Path, optional
        Stage in a new folder under this local folder instead (a table output, whose
        commit is not a folder's); nothing is derived from job or output names.
    heartbeat : float, optional
        Seconds between heartbeats while the staging is open.
    token : str, optional
        The staging folder's token (16 hex digits); default a random one. A resumable job
        passes the same token at every attempt (:func:`resume_token`) to find its staging.
    resumable : str, optional
        The key of the resumable job this staging belongs to: the folder is marked
        (``_adp_resumable``) when it opens, so cleaning passes it by even when its owner
        was killed, until the job commits or ``adp clean --resumable`` removes it.
    """

    def __init__(
        self,
        uri: str,
        mode: Mode = "error",
        storage_options: dict[str, Any] | None = None,
        *,
        base: str | os.PathLike[str] | None = None,
        heartbeat: float | None = None,
        token: str | None = None,
        resumable: str | None = None,
    ) -> None:
        self.uri = uri.rstrip("/") or uri
        self.mode = mode
        self.storage_options = storage_options
        if token is not None and not _TOKEN.fullmatch(token):
            raise ConfigError(f"a staging token is 16 hex digits, got {token!r}")
        self.token = token or uuid.uuid4().hex[:16]
        self.resumable = resumable
        self.local = base is not None or is_local(self.uri)
        self.target: Path | None = None
        if base is not None:
            self.root = str(Path(base).absolute() / self.token)
        elif self.local:
            self.target = Path(os.path.abspath(local_path(self.uri)))
            self.root = str(local_staging_root(self.target, self.token))
        else:
            self.root = f"{self.uri}/{VERSIONS}/{self.token}"
        self.committed = False
        self.committed_folder: str | None = None
        self._heartbeat_every = heartbeat
        self._heartbeat: Heartbeat | None = None

    def __repr__(self) -> str:
        return f"Staging({self.uri!r}, mode={self.mode!r}, root={self.root!r})"

    def path(self, *parts: str) -> str:
        """A location inside the staging folder."""
        return "/".join([self.root, *parts])

    def _fs(self) -> tuple[Any, str]:
        fs, path = fsspec.core.url_to_fs(self.root, **(self.storage_options or {}))
        return fs, str(path)

    def open(self) -> Staging:
        """Create the staging folder with its owner record, register it and start its
        heartbeat."""
        fs, root = self._fs()
        fs.makedirs(root, exist_ok=True)
        target = str(self.target) if self.target else "" if self.local else shown(self.uri)
        owner = Owner.here(self.root, target)
        fs.pipe_file(f"{root}/{OWNER}", owner.to_json().encode())
        if self.resumable is not None:
            fs.pipe_file(f"{root}/{RESUMABLE}", json.dumps({"job": self.resumable}).encode())
        register(self.token, owner)
        every = self._heartbeat_every
        self._heartbeat = Heartbeat(fs, root, **({"every": every} if every else {})).start()
        return self

    def commit(self, data_folder: str, manifest: dict[str, Any]) -> None:
        """Put ``data_folder`` in place with ``manifest``, in one step (see the module).

        Raises
        ------
        adp.errors.OutputExistsError
            With ``mode="error"`` when another job committed first (naming its manifest),
            or when the output holds files no ADP manifest lists.
        """
        check_allowed(self.uri)
        state = describe_output(self.uri, self.storage_options)
        if self.mode == "error" and state.manifest is not None:
            raise _lost(self.uri, f"{self.uri}/{MANIFEST}", self.storage_options)
        _refuse_existing(self.uri, self.mode, state)
        if self.local:
            self._commit_local(data_folder, manifest)
        else:
            self._commit_remote(data_folder, manifest)
        self.committed = True

    def _commit_local(self, data_folder: str, manifest: dict[str, Any]) -> None:
        if self.target is None:
            raise ConfigError(f"{self!r} stages for a table, not a folder: it has no commit")
        source = local_path(data_folder)
        with open(source / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=2, default=str)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(source, self.target)  # fails on a non-empty folder: exclusive
            return
        except OSError as exc:
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise
            if self.mode != "overwrite":
                raise _lost(self.uri, f"{self.target}/{MANIFEST}", None) from None
        aside = Path(self.root) / ASIDE
        for _ in range(3):  # another overwrite may land between the two renames
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.target, aside)
            try:
                os.rename(source, self.target)
                break
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    if aside.exists() and not self.target.exists():
                        os.rename(aside, self.target)
                    raise
                shutil.rmtree(aside, ignore_errors=True)
        else:  # pragma: no cover - three overwrites landing in the same microseconds
            raise OutputExistsError(f"output {self.uri!r} kept changing during the commit")
        shutil.rmtree(aside, ignore_errors=True)

    def _commit_remote(self, data_folder: str, manifest: dict[str, Any]) -> None:
        fs, _ = self._fs()
        base = fsspec.core.url_to_fs(self.uri, **(self.storage_options or {}))[1].rstrip("/")
        folder = fsspec.core.url_to_fs(data_folder, **(self.storage_options or {}))[1]
        prefix = str(folder).rstrip("/")[len(base) + 1 :]
        if not str(folder).startswith(f"{base}/{VERSIONS}/"):
            raise ConfigError(
                f"{data_folder!r} is not a version of {self.uri!r}: stage the data with "
                "staging.path(...) before committing it"
            )
        previous = read_manifest(self.uri, self.storage_options)
        body = json.dumps({**manifest, "prefix": prefix}, indent=2, default=str).encode()
        target = f"{base}/{MANIFEST}"
        try:
            # The commit: one PUT. With mode "error", only if no manifest exists yet.
            fs.pipe_file(target, body, mode="create" if self.mode == "error" else "overwrite")
        except FileExistsError:
            raise _lost(self.uri, f"{self.uri}/{MANIFEST}", self.storage_options) from None
        self.committed_folder = prefix
        fs.invalidate_cache()
        if previous is not None:  # only now may the previous version go
            old = [p for p in manifest_paths(previous) if not p.startswith(prefix + "/")]
            with contextlib.suppress(FileNotFoundError):
                fs.rm([f"{base}/{p}" for p in old])
            for version in {p.split("/")[1] for p in old if p.startswith(VERSIONS + "/")}:
                if f"{VERSIONS}/{version}" != f"{VERSIONS}/{self.token}":
                    with contextlib.suppress(FileNotFoundError):
                        fs.rm(f"{base}/{VERSIONS}/{version}", recursive=True)

    def cleanup(self) -> None:
        """Stop the heartbeat and remove the staging folder (on an object store, all of it
        but the committed version's data)."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        fs, root = self._fs()
        try:
            if self.committed_folder is not None:
                keep = f"{root.rsplit('/' + VERSIONS + '/', 1)[0]}/{self.committed_folder}"
                doomed = [p for p in fs.find(root) if not p.startswith(keep + "/")]
                if doomed:
                    fs.rm(doomed)
            elif fs.exists(root):
                fs.rm(root, recursive=True)
        except FileNotFoundError:
            pass
        unregister(self.token)

    def keep(self) -> None:
        """Leave the (resumable) staging folder for the job's next attempt: stop the
        heartbeat, remove nothing."""
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None

    @contextmanager
    def session(self) -> Iterator[Staging]:
        """Open the staging folder; it is removed on exit, committed or not."""
        self.open()
        try:
            yield self
        finally:
            self.cleanup()


def manifest_for(parts: Sequence[WrittenPart], **fields: Any) -> dict[str, Any]:
    """The manifest of a committed dataset: its files, rows and the job's figures."""
    return {
        "format": "adp-scores",
        "version": 1,
        "rows": sum(p.rows for p in parts),
        "files": [{**asdict(p), "path": p.path.rsplit("/", 1)[-1]} for p in parts],
        **fields,
    }


__all__ = [
    "ASIDE",
    "MANIFEST",
    "RESUMABLE",
    "STAGING_MARK",
    "Mode",
    "Staging",
    "check_target",
    "local_staging_root",
    "manifest_for",
    "resume_token",
]

"""Removing staging that its owner left behind (a killed job, a closed laptop).

:func:`clean_output` looks where an output's staging lives (beside a local output, under an
object-store output's ``_adp_v/``) and :func:`clean_registered` at every staging folder
the state directory's register knows; both remove only folders whose owner is gone (see
:mod:`adp.io.owners`), and put back a dataset an interrupted local overwrite had moved
aside. A sink's check runs both before a job starts; ``adp clean`` runs them on demand.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adp.io.outputs import VERSIONS, read_manifest
from adp.io.owners import (
    GRACE_SECONDS,
    abandoned,
    fs_for,
    read_owner,
    registered,
    unregister,
)
from adp.io.staging import ASIDE, RESUMABLE, STAGING_MARK
from adp.paths import is_local, local_path


@dataclass
class Cleaned:
    """What a clean did: staging removed, datasets put back, staging kept (in use), and
    locations that could not be reached."""

    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)

    def add(self, other: Cleaned) -> Cleaned:
        for name in ("removed", "restored", "kept", "unreachable"):
            mine = getattr(self, name)
            mine.extend(x for x in getattr(other, name) if x not in mine)
        return self


def _remove(
    fs: Any, root: str, done: Cleaned, stale: float | None, resumable: bool = False
) -> None:
    """Remove the staging folder ``root`` if its owner is gone (restoring a moved-aside
    dataset first); staging kept for a resumed job only when ``resumable``."""
    if not abandoned(fs, root, stale, grace=GRACE_SECONDS if _is_local_fs(fs) else 0.0):
        done.kept.append(root)
        return
    if not resumable and fs.exists(f"{root}/{RESUMABLE}"):
        done.kept.append(root)
        return
    owner = read_owner(fs, root)
    aside = Path(root) / ASIDE
    if owner is not None and owner.target and _is_local_fs(fs):
        target = Path(owner.target)
        if aside.is_dir() and not target.exists():
            os.rename(aside, target)
            done.restored.append(str(target))
    with contextlib.suppress(FileNotFoundError):
        fs.rm(root, recursive=True)
    done.removed.append(root)


def _is_local_fs(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


def clean_output(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    *,
    stale: float | None = None,
    resumable: bool = False,
) -> Cleaned:
    """Remove the abandoned staging of the output at ``uri``.

    Local: the ``.<name>.adp-staging-*`` folders beside it. Object stores: the versions
    under ``<uri>/_adp_v/`` that its manifest does not name and no live job owns. Staging
    kept for a resumed job (:meth:`adp.io.staging.Staging.keep`) goes only with
    ``resumable=True``.
    """
    done = Cleaned()
    if is_local(uri):
        target = Path(os.path.abspath(local_path(uri)))
        if target.parent.is_dir():
            for root in sorted(target.parent.glob(f".{target.name}{STAGING_MARK}*")):
                fs, path = fs_for(str(root))
                _remove(fs, path, done, stale, resumable)
        return done
    fs, base = fs_for(uri, storage_options)
    manifest = read_manifest(uri, storage_options) or {}
    prefix = str(manifest.get("prefix") or "")
    current = prefix.split("/")[1] if prefix.startswith(VERSIONS + "/") else None
    try:
        versions = list(fs.ls(f"{base}/{VERSIONS}", detail=False))
    except FileNotFoundError:
        return done
    for version in sorted(str(v).rstrip("/") for v in versions):
        if version.rsplit("/", 1)[-1] != current:
            _remove(fs, version, done, stale, resumable)
    return done


def clean_registered(
    *, local_only: bool = False, stale: float | None = None, resumable: bool = False
) -> Cleaned:
    """Remove the abandoned staging folders of the state directory's register.

    Parameters
    ----------
    local_only : bool
        Skip object-store staging (its credentials are not in the register).
    stale : float, optional
        Seconds after which another host's heartbeat marks its owner gone (default
        ``adp.io.stale-seconds``).
    resumable : bool
        Remove staging kept for resumed jobs too.
    """
    done = Cleaned()
    for token, owner in registered():
        if local_only and not is_local(owner.location):
            continue
        try:
            fs, root = fs_for(owner.location)
            if not fs.exists(root):
                unregister(token)
                continue
            before = len(done.removed)
            _remove(fs, root, done, stale, resumable)
            if len(done.removed) > before:
                unregister(token)
        except OSError:  # an unreachable store: tried again next time
            done.unreachable.append(owner.location)
    return done


__all__ = ["Cleaned", "clean_output", "clean_registered"]

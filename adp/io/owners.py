"""Who owns a staging folder, whether they are still alive, and removing what they left.

Every staging folder carries an owner record (``_adp_owner.json``: host, pid, the
process's start time, when it started, the staged-for output) and a heartbeat
(``_adp_heartbeat``, rewritten every ``adp.io.heartbeat-seconds`` by a thread while the job
runs). A copy of the owner record is kept in the state directory's register
(``<state-dir>/staging-owners/<token>.json``), so that ``adp clean`` finds every staging
folder this machine started.

An owner is gone when, on this host, its pid is dead or now belongs to a process that
started at another time (a reused pid); on another host, when its heartbeat is older than
``adp.io.stale-seconds``. Staging whose owner is gone is removed by the next job (at its
sink's check) and by ``adp clean``; a live job's staging is never touched.

Both timings are read from the dask config when they are used (:func:`heartbeat_seconds`,
:func:`stale_seconds`), so ``dask.config.set`` changes them for what follows; the module
constants are only their documented defaults.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import fsspec
import psutil

OWNER = "_adp_owner.json"
HEARTBEAT = "_adp_heartbeat"
#: The default of ``adp.io.heartbeat-seconds``: seconds between two heartbeats of a running
#: job's staging (the value in use is :func:`heartbeat_seconds`).
HEARTBEAT_SECONDS = 10.0
#: The default of ``adp.io.stale-seconds``: a heartbeat older than this (seconds) marks the
#: owner on another host as gone (the value in use is :func:`stale_seconds`).
STALE_SECONDS = 120.0
#: A staging folder without an owner record is debris once it is this old (seconds).
GRACE_SECONDS = 60.0


def heartbeat_seconds() -> float:
    """Seconds between two heartbeats of a running job's staging: ``adp.io.heartbeat-seconds``
    from the dask config, read now."""
    from adp.config import settings

    return float(settings().io.heartbeat_seconds)


def stale_seconds() -> float:
    """Seconds after which another host's heartbeat marks its owner gone:
    ``adp.io.stale-seconds`` from the dask config, read now."""
    from adp.config import settings

    return float(settings().io.stale_seconds)


@dataclass(frozen=True)
class Owner:
    """The process that owns a staging folder."""

    host: str
    pid: int
    process_started: float
    started_at: str
    location: str
    target: str = ""

    @classmethod
    def here(cls, location: str, target: str = "") -> Owner:
        """The current process as the owner of ``location``, staged for ``target``."""
        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            process_started=_process_started(os.getpid()) or 0.0,
            started_at=dt.datetime.now(dt.UTC).isoformat(),
            location=location,
            target=target,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Owner | None:
        try:
            data = json.loads(text)
            return cls(
                host=str(data["host"]),
                pid=int(data["pid"]),
                process_started=float(data["process_started"]),
                started_at=str(data["started_at"]),
                location=str(data["location"]),
                target=str(data.get("target", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def _process_started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def owner_alive(owner: Owner, heartbeat_age: float | None, stale: float | None = None) -> bool:
    """Whether ``owner`` may still be using its staging.

    On this host: its pid runs and started when the record says (within a second). On
    another host: its heartbeat (or, without one, nothing) is younger than ``stale``
    seconds (default :func:`stale_seconds`).
    """
    if owner.host == socket.gethostname():
        started = _process_started(owner.pid)
        if started is None:
            return False
        return abs(started - owner.process_started) < 1.0
    if stale is None:
        stale = stale_seconds()
    return heartbeat_age is not None and heartbeat_age < stale


def _age(fs: Any, path: str) -> float | None:
    try:
        modified = fs.modified(path)
    except (FileNotFoundError, OSError, NotImplementedError):
        return None
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=dt.UTC)
    return max(0.0, (dt.datetime.now(dt.UTC) - modified).total_seconds())


def read_owner(fs: Any, root: str) -> Owner | None:
    """The owner record of the staging folder ``root`` (an fs path), if any."""
    try:
        return Owner.from_json(fs.cat_file(f"{root}/{OWNER}"))
    except (FileNotFoundError, OSError):
        return None


def abandoned(fs: Any, root: str, stale: float | None = None, grace: float = GRACE_SECONDS) -> bool:
    """Whether the staging folder ``root`` (an fs path) belongs to no live process.

    An owner on another host is gone once its heartbeat is ``stale`` seconds old (default
    :func:`stale_seconds`).

    A folder without an owner record counts as abandoned once nothing in it changed for
    ``grace`` seconds: its owner writes the record right after creating the folder, so
    only debris (or, on an object store, where a folder exists only once it holds the
    record, a superseded version) lacks one.
    """
    owner = read_owner(fs, root)
    if owner is not None:
        return not owner_alive(owner, _age(fs, f"{root}/{HEARTBEAT}"), stale)
    if grace <= 0:
        return True
    ages = [_age(fs, p) for p in [root, *_sample(fs, root)]]
    known = [a for a in ages if a is not None]
    return not known or min(known) > grace


def _sample(fs: Any, root: str) -> list[str]:
    try:
        return list(fs.find(root))[:20]
    except (FileNotFoundError, OSError):
        return []


class Heartbeat:
    """A daemon thread rewriting ``<root>/_adp_heartbeat`` every ``every`` seconds.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The file system of the staging folder.
    root : str
        The staging folder's fs path.
    every : float, optional
        Seconds between beats; default :func:`heartbeat_seconds`, read when the heartbeat
        is created.
    """

    def __init__(self, fs: Any, root: str, every: float | None = None) -> None:
        self.fs, self.root = fs, root
        self.every = heartbeat_seconds() if every is None else every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> None:
        """Write the heartbeat once (failures are retried at the next beat)."""
        with contextlib.suppress(OSError):
            self.fs.pipe_file(f"{self.root}/{HEARTBEAT}", str(time.time()).encode())

    def start(self) -> Heartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="adp-staging-heartbeat")
        self._thread.daemon = True
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def register_dir() -> Path:
    """The state directory's register of staging owners."""
    from adp.config import settings

    return settings().state_dir / "staging-owners"


def register(token: str, owner: Owner) -> None:
    """Keep a copy of ``owner`` in the register (best effort: the folder's own record is
    what the next job reads)."""
    folder = register_dir()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{token}.json").write_text(owner.to_json())


def unregister(token: str) -> None:
    """Drop ``token`` from the register."""
    with contextlib.suppress(OSError):
        (register_dir() / f"{token}.json").unlink(missing_ok=True)


def registered() -> Iterator[tuple[str, Owner]]:
    """Every staging owner in the register, with its token."""
    folder = register_dir()
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.json")):
        try:
            owner = Owner.from_json(path.read_text())
        except OSError:
            continue
        if owner is not None:
            yield path.stem, owner


def fs_for(location: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The file system and fs path of ``location``."""
    fs, path = fsspec.core.url_to_fs(location, **(storage_options or {}))
    return fs, str(path).rstrip("/")


__all__ = [
    "GRACE_SECONDS",
    "HEARTBEAT",
    "HEARTBEAT_SECONDS",
    "OWNER",
    "STALE_SECONDS",
    "Heartbeat",
    "Owner",
    "abandoned",
    "fs_for",
    "heartbeat_seconds",
    "owner_alive",
    "read_owner",
    "register",
    "register_dir",
    "registered",
    "stale_seconds",
    "unregister",
]

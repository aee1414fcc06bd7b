"""Resolving and checking data locations (local paths and fsspec URLs)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from adp.config import settings
from adp.errors import AccessDeniedError


def protocol_of(uri: str) -> str:
    """Return the fsspec protocol of ``uri`` (``"file"`` for plain paths)."""
    parsed = urlparse(str(uri))
    if len(parsed.scheme) <= 1:  # a Windows drive letter is not a scheme
        return "file"
    return parsed.scheme


def is_local(uri: str) -> bool:
    """Whether ``uri`` names a path on the local file system."""
    return protocol_of(uri) in ("file", "local")


def local_path(uri: str) -> Path:
    """The local :class:`~pathlib.Path` of a ``file://`` URL or plain path."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return Path(os.path.expanduser(uri))


def check_allowed(uri: str) -> None:
    """Refuse ``uri`` when ``adp.io.allowed-roots`` is set and no root contains it.

    Raises
    ------
    adp.errors.AccessDeniedError
        Naming the path and the configured roots.
    """
    roots = settings().io.allowed_roots
    if not roots:
        return
    if is_local(uri):
        target = str(local_path(uri).resolve())
        resolved = [str(local_path(r).resolve()) for r in roots if is_local(r)]
    else:
        target = str(uri)
        resolved = [r for r in roots if not is_local(r)]
    for root in resolved:
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return
    raise AccessDeniedError(
        f"{uri!r} is outside the allowed roots {roots} (dask config adp.io.allowed-roots)"
    )

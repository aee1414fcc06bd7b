"""Where a path given on the command line or in a spec points, made absolute on the client.

Job and stream specs resolve their relative local paths (and the file of a ``sqlite:///``
URL) against the directory ``adp`` runs in when they are validated, so every task that
leaves the client carries absolute paths and workers of a remote scheduler do not resolve
them in their own directory.
"""

from __future__ import annotations

import os

__all__ = ["resolve_location"]


def resolve_location(uri: str) -> str:
    """``uri`` with a relative local path made absolute against the current directory.

    Local paths (``~`` expanded), ``file://`` URLs and the file of a ``sqlite:///`` URL are
    resolved; remote URLs (``s3://``), server database URLs and absolute paths come back
    unchanged. Symbolic links are kept (the path is made absolute, not resolved).
    """
    from adp.db import is_sql_url
    from adp.paths import is_local

    if not isinstance(uri, str) or not uri:
        return uri
    if is_sql_url(uri):
        return _resolve_sqlite(uri)
    if not is_local(uri):
        return uri
    prefix = "file://" if uri.startswith("file://") else ""
    path = uri[len(prefix) :]
    resolved = os.path.abspath(os.path.expanduser(path))
    if path.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    return prefix + resolved


def _resolve_sqlite(uri: str) -> str:
    import sqlalchemy as sa

    try:
        url = sa.make_url(uri)
    except (sa.exc.ArgumentError, ValueError):
        return uri  # refused, naming it, when it is opened
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return uri
    if database.startswith("file:") or os.path.isabs(database):
        return uri
    absolute = os.path.abspath(os.path.expanduser(database))
    return url.set(database=absolute).render_as_string(hide_password=False)

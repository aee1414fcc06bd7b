"""The guard on user data: an output never is, holds, or lies inside the data a job reads.

Before any work, :func:`check_output_against_sources` refuses an output location that

- is one of the job's sources, contains one, or lies inside one: local paths after
  ``file://``, ``~``, relative parts and symbolic links are resolved; object-store URLs
  (``s3://``, ``s3a://``, ``gs://`` ...) by store, bucket and key prefix, on the same
  endpoint; database outputs by database (backend, host, port and database name, or the
  resolved SQLite file) and table;
- is ``.``, the current directory, a home directory or a file-system root (local), or a
  whole bucket (object stores), whatever the mode: replacing such a place loses far more
  than a job's output.

Each refusal is one line naming both locations and the fix.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from adp.errors import ConfigError
from adp.io.s3 import endpoint_of
from adp.paths import is_local, local_path, protocol_of

# Protocols that name the same store.
_SAME_STORE = {"s3a": "s3", "s3n": "s3", "gcs": "gs", "abfss": "abfs", "az": "abfs"}
_GLOB = re.compile(r"[*?\[]")
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(frozen=True)
class SourceRef:
    """A source as the guard sees it: a URI, and for a database its table or query.

    Parameters
    ----------
    uri : str
        A path, an fsspec URL or a database URL.
    table : str, optional
        The table a database source reads.
    query : str, optional
        The query a database source reads (its words are searched for the output table).
    storage_options : mapping, optional
        fsspec options of an object-store source (only its endpoint is used).
    """

    uri: str
    table: str | None = None
    query: str | None = None
    storage_options: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, source: Any) -> SourceRef:
        """A :class:`SourceRef` from a URI string, a SourceRef, or an object with ``uri``
        (and optionally ``options`` and ``storage_options``), such as a job's source spec."""
        if isinstance(source, SourceRef):
            return source
        if isinstance(source, str | os.PathLike):
            return cls(os.fspath(source))
        uri = getattr(source, "uri", None)
        if not isinstance(uri, str):
            raise ConfigError(f"a source must be a URI or have a 'uri', got {source!r}")
        options = getattr(source, "options", None) or {}
        table, query = options.get("table"), options.get("query")
        return cls(
            uri,
            table=str(table) if table else None,
            query=str(query) if query else None,
            storage_options=getattr(source, "storage_options", None),
        )


def shown(uri: str) -> str:
    """``uri`` as it may appear in a message: no password, no user information."""
    from adp.db import is_sql_url, safe_url

    if is_sql_url(uri):
        return safe_url(uri)
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
    return uri


def _literal_prefix(path: str) -> str:
    """The part of a (possibly glob) path before its first wildcard, up to a separator."""
    match = _GLOB.search(path)
    if match is None:
        return path
    return path[: match.start()].rsplit("/", 1)[0] or "/"


def _local(uri: str) -> Path:
    return Path(os.path.realpath(_literal_prefix(str(local_path(uri)))))


def _remote(uri: str) -> tuple[str, str, PurePosixPath]:
    parts = urlsplit(_literal_prefix(uri))
    protocol = protocol_of(uri)
    bucket = parts.netloc.rsplit("@", 1)[-1]
    key = PurePosixPath("/" + parts.path.strip("/"))
    return _SAME_STORE.get(protocol, protocol), bucket, key


def _homes() -> set[Path]:
    homes = {Path(os.path.realpath(Path.home()))}
    try:
        entries = pwd.getpwall()
    except OSError:  # pragma: no cover - no user database
        entries = []
    for entry in entries:
        if entry.pw_dir and entry.pw_dir not in ("/", "/nonexistent"):
            homes.add(Path(os.path.realpath(entry.pw_dir)))
    return homes


def check_output_location(output_uri: str) -> None:
    """Refuse ``.``, the current directory, a home directory or a file-system root as an
    output (and a whole bucket on an object store), whatever the mode.

    Raises
    ------
    adp.errors.ConfigError
        Naming the output, what it is, and the fix.
    """
    from adp.db import is_sql_url

    if is_sql_url(output_uri):
        return
    if is_local(output_uri):
        path = _local(output_uri)
        what = None
        if path == Path(path.anchor):
            what = "a file-system root"
        elif path == Path(os.path.realpath(os.getcwd())):
            what = "the current directory"
        elif path in _homes():
            what = "a home directory"
        if what is not None:
            raise ConfigError(
                f"output {output_uri!r} is {what} ({path}): a job's output replaces what is "
                "there; name a new folder for it, such as ./scores"
            )
        return
    _, bucket, key = _remote(output_uri)
    if str(key) == "/":
        raise ConfigError(
            f"output {shown(output_uri)!r} is a whole bucket: name a folder inside it, such "
            f"as {shown(output_uri).rstrip('/')}/scores"
        )


def _overlap(inner: Any, outer: Any) -> bool:
    return bool(inner == outer or outer in inner.parents)


def _relation(output: Any, source: Any) -> str | None:
    if output == source:
        return "is"
    if _overlap(output, source):
        return "lies inside"
    if _overlap(source, output):
        return "contains"
    return None


def _database(url: str) -> tuple[str, ...]:
    from adp.db import parse_url

    parsed = parse_url(url)
    backend = parsed.get_backend_name()
    backend = "postgresql" if backend == "postgres" else backend
    if backend == "sqlite":
        return (backend, os.path.realpath(str(parsed.database or "")))
    host = (parsed.host or "localhost").lower()
    host = "localhost" if host in _LOOPBACK else host
    port = parsed.port or _DEFAULT_PORTS.get(backend, 0)
    return (backend, host, str(port), str(parsed.database or ""))


def _reads_table(source: SourceRef, table: str) -> bool:
    if source.table is not None:
        return source.table.split(".")[-1].strip('"').lower() == table.lower()
    if source.query is not None:
        return re.search(rf"(?<![\w.]){re.escape(table)}(?!\w)", source.query, re.I) is not None
    return False


def _refuse(output: str, relation: str, source: str, resolved: str, fix: str) -> ConfigError:
    return ConfigError(
        f"output {shown(output)!r} {relation} the source {shown(source)!r}{resolved}: the job "
        f"would overwrite the data it reads; {fix}"
    )


def check_output_against_sources(
    output_uri: str,
    sources: Iterable[Any],
    *,
    table: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> None:
    """Refuse an output that is a source, contains one or lies inside one, before any work.

    Also refuses, through :func:`check_output_location`, ``.``, the current directory, a
    home directory, a file-system root or a whole bucket as a folder output.

    Parameters
    ----------
    output_uri : str
        The output folder, or the database URL of a table output.
    sources : iterable
        The job's sources: URI strings, :class:`SourceRef` objects, or objects with
        ``uri`` (and ``options`` holding ``table`` or ``query``), such as a job's source
        spec.
    table : str, optional
        The output table of a database output.
    storage_options : mapping, optional
        The output's fsspec options (its endpoint tells object stores apart).

    Raises
    ------
    adp.errors.ConfigError
        One line naming the output, the source, how they overlap, and the fix.
    """
    from adp.db import is_sql_url

    refs = [SourceRef.of(s) for s in sources]
    if table is not None or is_sql_url(output_uri):
        if table is None:
            return
        target = _database(output_uri)
        for ref in refs:
            if is_sql_url(ref.uri) and _database(ref.uri) == target and _reads_table(ref, table):
                raise _refuse(
                    f"{output_uri} table {table}",
                    "is",
                    f"{ref.uri} table {ref.table or '(its query)'}",
                    "",
                    "write the scores to another table",
                )
        return
    check_output_location(output_uri)
    fix = "write the output to a folder outside the source"
    if is_local(output_uri):
        out = _local(output_uri)
        for ref in refs:
            if is_sql_url(ref.uri) or not is_local(ref.uri):
                continue
            src = _local(ref.uri)
            relation = _relation(out, src)
            if relation is not None:
                resolved = f" (resolved: {out} and {src})"
                raise _refuse(output_uri, relation, ref.uri, resolved, fix)
        return
    out_store, out_bucket, out_key = _remote(output_uri)
    out_endpoint = endpoint_of(storage_options)
    for ref in refs:
        if is_sql_url(ref.uri) or is_local(ref.uri):
            continue
        store, bucket, key = _remote(ref.uri)
        if (store, bucket) != (out_store, out_bucket):
            continue
        if endpoint_of(ref.storage_options) not in (None, out_endpoint) and out_endpoint:
            continue  # the same bucket name on another service
        relation = _relation(out_key, key)
        if relation is not None:
            raise _refuse(output_uri, relation, ref.uri, "", fix)


def sources_of(sources: Sequence[Any] | None) -> list[SourceRef]:
    """The :class:`SourceRef` of each source (none for None)."""
    return [SourceRef.of(s) for s in sources or ()]


__all__ = [
    "SourceRef",
    "check_output_against_sources",
    "check_output_location",
    "shown",
    "sources_of",
]

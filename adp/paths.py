"""Resolving and checking data locations (local paths, fsspec URLs and endpoints).

Two checks run before anything is opened:

- :func:`check_allowed` refuses a location outside ``adp.io.allowed-roots`` (when set);
- :func:`check_storage_options` and :func:`check_endpoint` refuse an endpoint on a
  link-local address (``169.254.0.0/16``, ``fe80::/10``, where cloud instance metadata
  services answer with credentials) unless ``adp.io.allow-link-local-endpoints`` is true.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from adp.config import settings
from adp.errors import AccessDeniedError, ConfigError

# Instance metadata services that are not link-local (AWS's IPv6 endpoint).
_METADATA_ADDRESSES = frozenset({ipaddress.ip_address("fd00:ec2::254")})
_ENDPOINT_KEYS = ("endpoint_url", "endpoint", "host")


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


def check_allowed(uri: str, *, also: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Refuse ``uri`` when ``adp.io.allowed-roots`` is set and no root contains it.

    Parameters
    ----------
    uri : str
        A local path or fsspec URL.
    also : sequence of paths
        Locations allowed besides the configured roots when those are set: ADP's state
        directory, for its own databases (audit log, model registry).

    Raises
    ------
    adp.errors.AccessDeniedError
        Naming the path and the configured roots.
    """
    roots = settings().io.allowed_roots
    if not roots:
        return
    candidates = [*roots, *(os.fspath(extra) for extra in also)]
    if is_local(uri):
        target = str(local_path(uri).resolve())
        resolved = [str(local_path(r).resolve()) for r in candidates if is_local(r)]
    else:
        target = str(uri)
        resolved = [r for r in candidates if not is_local(r)]
    for root in resolved:
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return
    raise AccessDeniedError(
        f"{uri!r} is outside the allowed roots {roots} (dask config adp.io.allowed-roots)"
    )


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``host`` spells, in any notation a resolver accepts, else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    try:  # legacy IPv4 spellings: "2852039166", "0xa9fea9fe", "169.254.43518"
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # unresolvable: the connection will fail, naming the endpoint
    addresses = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
        except ValueError:
            continue
    return addresses


def _is_metadata_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_link_local or address in _METADATA_ADDRESSES


def check_endpoint(url: str, *, field: str = "endpoint_url") -> None:
    """Refuse an endpoint URL that is malformed or points at a link-local address.

    Parameters
    ----------
    url : str
        An endpoint such as ``"http://127.0.0.1:9000"`` or a database URL's host.
    field : str
        How to name the setting in errors (``"storage_options.client_kwargs.endpoint_url"``).

    Raises
    ------
    adp.errors.ConfigError
        When ``url`` is not an ``http``/``https`` URL with a host.
    adp.errors.AccessDeniedError
        When the host is (or resolves to) a link-local or instance-metadata address and
        ``adp.io.allow-link-local-endpoints`` is false.
    """
    parsed = urlparse(str(url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{field}={url!r} is not an endpoint URL: use http(s)://host[:port]")
    check_host(parsed.hostname, field=field, shown=str(url))


def check_host(host: str, *, field: str, shown: str | None = None) -> None:
    """Refuse ``host`` when it is, or resolves to, a link-local or metadata address."""
    if settings().io.allow_link_local_endpoints:
        return
    for address in _resolve(host):
        if _is_metadata_address(address):
            raise AccessDeniedError(
                f"{field}={shown or host!r} points at the link-local address {address}, where "
                "cloud instance metadata services hand out credentials; refused. Set "
                "adp.io.allow-link-local-endpoints: true in the dask config if this is intended"
            )


def _endpoints(options: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    found = []
    for name in _ENDPOINT_KEYS:
        value = options.get(name)
        if isinstance(value, str) and value:
            found.append((f"{prefix}.{name}", value))
    for nested in ("client_kwargs", "config_kwargs"):
        inner = options.get(nested)
        if isinstance(inner, Mapping):
            found.extend(_endpoints(inner, f"{prefix}.{nested}"))
    return found


def check_storage_options(storage_options: Mapping[str, Any] | None) -> None:
    """Check the endpoints named in fsspec ``storage_options`` before anything connects.

    Looks at ``endpoint_url`` (and ``endpoint``, ``host``) at the top level and inside
    ``client_kwargs`` and ``config_kwargs``.

    Raises
    ------
    adp.errors.ConfigError
        When ``storage_options`` is not a mapping or an endpoint is malformed.
    adp.errors.AccessDeniedError
        When an endpoint is link-local and that is not allowed (see :func:`check_endpoint`).
    """
    if storage_options is None:
        return
    if not isinstance(storage_options, Mapping):
        raise ConfigError(
            f"storage_options must be a mapping, got {type(storage_options).__name__}"
        )
    for field, url in _endpoints(storage_options, "storage_options"):
        if field.endswith(".host"):
            check_host(url, field=field)
        else:
            check_endpoint(url, field=field)

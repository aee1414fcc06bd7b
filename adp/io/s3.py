"""Remote stores (S3 through s3fs and any fsspec backend): bounded connect and read
timeouts, and connection, credential and permission failures turned into errors that name
the location, the endpoint and the fix.

Timeouts come from dask config ``adp.io.connect-timeout``, ``adp.io.read-timeout`` and
``adp.io.retries`` (see :func:`with_timeouts`): a dead or hung S3 endpoint fails within
~15 s by default instead of botocore's minutes, in a pre-flight check on the client and in
a read on the workers alike (s3fs's own retry loop does not multiply botocore's retries:
:mod:`adp.io.bounded_s3`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from adp.config import settings
from adp.errors import AccessDeniedError, AdpError, SourceError, one_line
from adp.paths import is_local, protocol_of

#: fsspec protocols served by s3fs (botocore), which understand ``config_kwargs``.
S3_PROTOCOLS = ("s3", "s3a")


def with_timeouts(uri: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``storage_options`` for ``uri`` with ADP's connect and read timeouts and retries.

    For S3 URLs, botocore's ``connect_timeout``, ``read_timeout`` and
    ``retries.total_max_attempts`` (1 + ``adp.io.retries``) are set in ``config_kwargs``
    unless the options already set them; other locations' options come back unchanged.

    For S3 it also makes fsspec open ``s3://`` and ``s3a://`` with
    :class:`adp.io.bounded_s3.BoundedS3FileSystem` (see :func:`use_bounded_s3`), whose
    own retry loop yields to botocore's, so these retries are the only ones: on the client,
    and on the workers, which receive the file system opened from these options. A hung
    endpoint then fails after about ``(1 + retries) * read-timeout`` seconds.

    Parameters
    ----------
    uri : str
        The location the options are for.
    storage_options : mapping, optional
        fsspec options; not modified.

    Returns
    -------
    dict or None
        A new dict (or ``storage_options`` itself for a location that is not S3).
    """
    if protocol_of(uri) not in S3_PROTOCOLS:
        return None if storage_options is None else dict(storage_options)
    use_bounded_s3()
    io = settings().io
    options = dict(storage_options or {})
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("connect_timeout", io.connect_timeout)
    config.setdefault("read_timeout", io.read_timeout)
    config.setdefault("retries", {"total_max_attempts": 1 + io.retries, "mode": "standard"})
    options["config_kwargs"] = config
    return options


def use_bounded_s3() -> None:
    """Register :class:`adp.io.bounded_s3.BoundedS3FileSystem` as fsspec's ``s3`` and
    ``s3a`` implementation, in place of s3fs's own (idempotent).

    An implementation that someone else registered for these protocols is left alone.
    The class behaves as s3fs's unless the options configure botocore's retries.
    """
    import fsspec
    import s3fs

    from adp.io.bounded_s3 import BoundedS3FileSystem

    for protocol in S3_PROTOCOLS:
        current = fsspec.registry.get(protocol)
        if current is None or current is s3fs.S3FileSystem:
            fsspec.register_implementation(protocol, BoundedS3FileSystem, clobber=True)


def endpoint_of(storage_options: Mapping[str, Any] | None) -> str | None:
    """The endpoint URL set in fsspec ``storage_options``, if any."""
    if not storage_options:
        return None
    for holder in (storage_options, storage_options.get("client_kwargs") or {}):
        if isinstance(holder, Mapping) and isinstance(holder.get("endpoint_url"), str):
            return str(holder["endpoint_url"])
    return None


def _where(uri: str, storage_options: Mapping[str, Any] | None) -> str:
    endpoint = endpoint_of(storage_options)
    return f"{uri!r} (endpoint {endpoint})" if endpoint else repr(uri)


def describe_remote_error(
    exc: BaseException, uri: str, storage_options: Mapping[str, Any] | None, action: str
) -> AdpError | None:
    """An ADP error for a failure of a remote store, or None when ``exc`` is not one.

    Recognises botocore's credential and connection errors (without importing botocore
    when it is not installed) and permission errors of any fsspec backend.
    """
    name = type(exc).__name__
    where = _where(uri, storage_options)
    if name in ("ReadTimeoutError", "ConnectTimeoutError") or isinstance(exc, TimeoutError):
        return SourceError(
            f"cannot {action} {where}: the endpoint did not answer in time "
            f"({one_line(str(exc), 160)}); check that the service is up, or raise "
            "adp.io.connect-timeout / adp.io.read-timeout in the dask config"
        )
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return AccessDeniedError(
            f"cannot {action} {where}: no usable credentials ({exc}). Give "
            "storage_options key and secret, a profile, or set AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY; use anon: true for a public bucket"
        )
    if name in (
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
        "ProxyConnectionError",
    ) or isinstance(exc, ConnectionError):
        return SourceError(
            f"cannot {action} {where}: the endpoint is unreachable ({exc}). Check "
            "storage_options.client_kwargs.endpoint_url and that the service is up"
        )
    if isinstance(exc, PermissionError):
        return AccessDeniedError(
            f"cannot {action} {where}: access denied ({exc}); check the credentials' rights"
        )
    if name == "ClientError":
        return SourceError(f"cannot {action} {where}: {exc}")
    return None


@contextmanager
def remote_errors(
    uri: str, storage_options: Mapping[str, Any] | None = None, action: str = "read"
) -> Iterator[None]:
    """Re-raise failures of a remote store as :class:`~adp.errors.SourceError` or
    :class:`~adp.errors.AccessDeniedError`, naming ``uri`` and the endpoint.

    Errors ADP raised itself, and every error on a local path, pass through unchanged.
    """
    try:
        yield
    except AdpError:
        raise
    except Exception as exc:
        if is_local(uri):
            raise
        translated = describe_remote_error(exc, uri, storage_options, action)
        if translated is None:
            raise
        raise translated from exc

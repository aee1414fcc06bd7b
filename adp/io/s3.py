"""Remote stores (S3 through s3fs and any fsspec backend): turning connection, credential
and permission failures into errors that name the location, the endpoint and the fix."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from adp.errors import AccessDeniedError, AdpError, SourceError
from adp.paths import is_local


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

"""Hiding secrets before anything is recorded: URLs, storage options and free text.

ADP records where data came from and went to (audit records, manifests, the model
registry, summaries, reports, error messages). Those places must never hold a password, an
access key's secret or a token, so every URI and every set of storage options passes
through this module on its way into them:

- :func:`redact_url` replaces the password of ``scheme://user:password@host/...`` (SQLAlchemy
  URLs, ``s3://key:secret@bucket``, ``http://user:pass@host``), also when it holds ``/``,
  ``@``, ``:``, ``#`` or ``?`` unescaped, and of the scheme-less ``key:secret@bucket/...``
  that s3fs puts in its messages, and the values of secret query parameters
  (``?password=``, ``?token=``, ``X-Amz-Signature=`` ...) with ``***``;
- :func:`redact_options` copies fsspec ``storage_options`` with the values of secret keys
  (``key``, ``secret``, ``token``, ``password``, ``aws_secret_access_key`` ...) replaced;
- :func:`redact_text` does the same for every URL inside a message, and removes given
  secret values wherever they occur;
- :func:`redact_value` walks JSON-like data (audit details) and redacts every string.

The module imports nothing from ADP and only the standard library.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "MASK",
    "is_secret_name",
    "redact_options",
    "redact_text",
    "redact_url",
    "redact_value",
    "secret_values",
]

MASK = "***"
"""What a secret is replaced with."""

# Names of storage options and query parameters whose values are secrets.
_SECRET_EXACT = frozenset(
    {"key", "secret", "token", "password", "passwd", "pwd", "sig", "auth", "authorization"}
)
_SECRET_PARTS = (
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "private",
    "signature",
    "access_key",
    "accesskey",
    "api_key",
    "apikey",
)
# Where a URL's userinfo password starts: after "scheme://user:" (the user may hold "@",
# such as an e-mail address), or after "user:" at the start of a token (no scheme: s3fs
# strips "s3://" from the paths in its messages; the user is then one word of key
# characters not followed by "//", so "/data/lake:v1@x" and "s3://bucket/a@b" are no match).
_USERINFO_START = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/?#\s]*):"
    r"|(?<![^'\"(\[{<=,;|])(?P<bare>[A-Za-z0-9._~%+\-]+):(?!//)"
)
_TOKEN = re.compile(r"\S+")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&;])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;#\s'\"]*)")


def is_secret_name(name: str) -> bool:
    """Whether an option or query parameter called ``name`` holds a secret.

    ``key``, ``secret``, ``token``, ``password``, ``sig`` and ``auth`` (s3fs, gcsfs,
    adlfs), and any name containing ``secret``, ``token``, ``password``, ``credential``,
    ``private``, ``signature``, ``access_key`` or ``api_key`` (case-insensitive).
    """
    lowered = str(name).lower().replace("-", "_")
    return lowered in _SECRET_EXACT or any(part in lowered for part in _SECRET_PARTS)


def _mask_password(token: str) -> str:
    """``token`` (text without whitespace) with the password of its userinfo masked.

    A password is unknown text: S3 secret keys hold ``/`` and ``+``, and passwords may hold
    ``@``, ``:``, ``#`` or ``?``, where urllib would end the authority. So the password runs
    from its start (:data:`_USERINFO_START`) to the token's *last* ``@``: when a later part
    of the URL holds an ``@`` too, more than the password is masked, but no character of
    it survives.
    """
    last_at = token.rfind("@")
    if last_at < 0 or ":" not in token[:last_at]:
        return token
    start = _USERINFO_START.search(token, 0, last_at)
    if start is None:
        return token
    return f"{token[: start.end()]}{MASK}{token[last_at:]}"


def _mask_param(match: re.Match[str]) -> str:
    if is_secret_name(match["name"]) and match["value"]:
        return f"{match['sep']}{match['name']}={MASK}"
    return match.group(0)


def redact_url(url: str | None) -> str | None:
    """``url`` with its password and secret query parameters replaced by ``***``.

    Parameters
    ----------
    url : str or None
        A SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``), an fsspec URL
        (``s3://key:secret@bucket/path``), an HTTP URL or a plain path.

    Returns
    -------
    str or None
        The same string when it holds no secret; ``None`` for ``None``.

    Notes
    -----
    A password runs to the last ``@`` before the next whitespace, since the password may
    hold any other character (``s3://AKIA:ab/c@d@bucket/x`` becomes
    ``s3://AKIA:***@bucket/x``). When the rest of the URL holds an ``@`` too, or a URL
    with a port has one in its path (``http://host:9000/a@b``, which reads like a
    password ``9000/a``), more than the password is masked: nothing of it is shown. A
    password holding whitespace must be percent-encoded, as URLs require.

    Examples
    --------
    >>> redact_url("s3://AKIA123:se/cr@t+K3y@bucket/lake/")
    's3://AKIA123:***@bucket/lake/'
    >>> redact_url("postgresql+psycopg://adp:hunter2@db:5432/lake")
    'postgresql+psycopg://adp:***@db:5432/lake'
    >>> redact_url("https://host/f.parquet?X-Amz-Signature=abc&part=1")
    'https://host/f.parquet?X-Amz-Signature=***&part=1'
    """
    if url is None:
        return None
    text = _TOKEN.sub(lambda token: _mask_password(token.group(0)), str(url))
    if "?" in text:
        text = _QUERY_PARAM.sub(_mask_param, text)
    return text


def redact_options(options: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of fsspec ``storage_options`` with every secret value replaced by ``***``.

    Secret keys are found at any depth (``client_kwargs``, ``config_kwargs``); URL values
    (``endpoint_url``) keep their host but lose any password.

    Parameters
    ----------
    options : mapping or None

    Returns
    -------
    dict or None
        ``None`` for ``None``.

    Examples
    --------
    >>> redact_options({"key": "AKIA", "secret": "s3cr3t", "client_kwargs": {"region_name": "x"}})
    {'key': '***', 'secret': '***', 'client_kwargs': {'region_name': 'x'}}
    """
    if options is None:
        return None
    out: dict[str, Any] = {}
    for name, value in options.items():
        if is_secret_name(str(name)) and value not in (None, "", False):
            out[name] = MASK
        else:
            out[name] = redact_value(value)
    return out


def secret_values(options: Mapping[str, Any] | None) -> list[str]:
    """The secret strings inside ``storage_options`` (what :func:`redact_options` hides),
    longest first, so they can be removed from free text with :func:`redact_text`."""
    found: set[str] = set()

    def walk(value: Any, secret: bool) -> None:
        if isinstance(value, Mapping):
            for name, inner in value.items():
                walk(inner, secret or is_secret_name(str(name)))
        elif isinstance(value, list | tuple):
            for inner in value:
                walk(inner, secret)
        elif secret and isinstance(value, str | bytes) and len(value) >= 3:
            found.add(value.decode(errors="replace") if isinstance(value, bytes) else value)

    walk(options or {}, False)
    return sorted(found, key=len, reverse=True)


def redact_text(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """``text`` with every URL's password, every secret query parameter and every string
    in ``secrets`` replaced by ``***``.

    Parameters
    ----------
    text : str or None
        A message, a reason, a log line.
    secrets : iterable of str
        Known secret values to remove wherever they occur (see :func:`secret_values`);
        strings shorter than 3 characters are ignored.

    Returns
    -------
    str or None
    """
    if text is None:
        return None
    out = redact_url(str(text)) or ""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def redact_value(value: Any, secrets: Iterable[str] = ()) -> Any:
    """JSON-like ``value`` with every string redacted (:func:`redact_text`) and the values
    of secret keys in mappings replaced by ``***``; other values are returned as they are."""
    secrets = tuple(secrets)
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {
            k: MASK
            if is_secret_name(str(k)) and isinstance(v, str | bytes) and v
            else redact_value(v, secrets)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, secrets) for v in value)
    return value

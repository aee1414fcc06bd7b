"""Where the ADP service's token-verification keys come from (``adp.service.auth``).

- The algorithm list: :func:`split_algorithms` refuses ``none`` and unknown names and
  separates HMAC algorithms from asymmetric ones, which never share a key.
- The HMAC secret: :func:`load_or_create_secret` reads ``secret-file``, or the embedded
  default ``<adp.state-dir>/service.secret``, generated on first use (64 random bytes,
  mode 0600, created atomically); a file shorter than 32 bytes or open to group or others
  is refused.
- Public keys: a PEM public key or certificate (``public-key``), or an OIDC provider's
  JWKS (``jwks-url``, https, or http on a loopback address).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from adp.config import AuthSettings
from adp.errors import ConfigError
from adp.paths import check_host
from adp.redact import redact_url

__all__ = [
    "HMAC_MIN_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_FILE",
    "SUPPORTED_ALGORITHMS",
    "VerificationKeys",
    "hmac_secret",
    "load_keys",
    "load_or_create_secret",
    "split_algorithms",
]

#: The shortest HMAC secret accepted (HS256); longer hashes need longer secrets.
MIN_SECRET_BYTES = 32
#: The embedded secret's file name in ``adp.state-dir``.
SECRET_FILE = "service.secret"  # noqa: S105 - a file name, not a secret
#: The shortest secret each HMAC algorithm accepts (its hash's size).
HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
#: Seconds to wait for a JWKS endpoint.
JWKS_TIMEOUT = 5.0

_SECRET_BYTES = 64  # enough for every HMAC algorithm
_ASYMMETRIC_KEYS: dict[str, tuple[type, ...]] = {
    **{f"RS{n}": (rsa.RSAPublicKey,) for n in (256, 384, 512)},
    **{f"PS{n}": (rsa.RSAPublicKey,) for n in (256, 384, 512)},
    **{f"ES{n}": (ec.EllipticCurvePublicKey,) for n in (256, 384, 512)},
    "EdDSA": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}
#: Every algorithm ``adp.service.auth.algorithms`` may list.
SUPPORTED_ALGORITHMS = (*HMAC_MIN_BYTES, *_ASYMMETRIC_KEYS)
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


@dataclass(frozen=True)
class VerificationKeys:
    """The keys that verify tokens.

    Attributes
    ----------
    secret : bytes or None
        The HMAC secret, when HMAC algorithms are configured.
    public : cryptography public key or None
        The key of ``public-key``.
    public_algorithms : tuple of str
        The configured asymmetric algorithms that ``public`` (or the JWKS) can verify.
    jwks : jwt.PyJWKClient or None
        The client of ``jwks-url``.
    """

    secret: bytes | None
    public: Any
    public_algorithms: tuple[str, ...]
    jwks: jwt.PyJWKClient | None


def split_algorithms(algorithms: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The configured algorithms as (HMAC, asymmetric); refuses ``none`` and unknown names."""
    if any(str(name).lower() == "none" for name in algorithms):
        raise ConfigError(
            "adp.service.auth.algorithms lists 'none': unsigned tokens are never accepted; "
            "remove it"
        )
    unknown = [name for name in algorithms if name not in SUPPORTED_ALGORITHMS]
    if unknown:
        raise ConfigError(
            f"adp.service.auth.algorithms has unknown algorithms {unknown}: "
            f"use some of {list(SUPPORTED_ALGORITHMS)}"
        )
    hmac = tuple(dict.fromkeys(a for a in algorithms if a in HMAC_MIN_BYTES))
    asymmetric = tuple(dict.fromkeys(a for a in algorithms if a in _ASYMMETRIC_KEYS))
    return hmac, asymmetric


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY)  # FileNotFoundError goes to the caller
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the service secret {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ConfigError(
                f"the service secret {path} is open to group or others (mode {mode:04o}): "
                f"run 'chmod 600 {path}'"
            )
        data = f.read(1 << 16)
    if len(data) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the service secret {path} holds {len(data)} bytes, fewer than "
            f"{MIN_SECRET_BYTES}: replace it with at least {MIN_SECRET_BYTES} random bytes "
            "(or delete it to have one generated)"
        )
    return data


def _create_secret(path: Path) -> None:
    """Write a new random secret to ``path`` atomically, mode 0600: it is written to a
    temporary file (``O_CREAT | O_EXCL``) and hard-linked into place, so a reader never
    sees a partial file and, when two processes race, the first link wins for both."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)  # whatever the umask
            f.write(secrets.token_bytes(_SECRET_BYTES))
            f.flush()
            os.fsync(f.fileno())
        # another process made it first: everyone uses theirs
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_or_create_secret(path: Path) -> bytes:
    """The HMAC secret held in ``path``, created with 64 random bytes (mode 0600) when
    the file does not exist.

    Parameters
    ----------
    path : Path
        The secret file; its bytes, as they are, are the key.

    Returns
    -------
    bytes
        At least :data:`MIN_SECRET_BYTES` bytes.

    Raises
    ------
    adp.errors.ConfigError
        When the file is shorter than 32 bytes, is readable or writable by group or others,
        is not a regular file, or cannot be read or created.
    """
    path = Path(path).expanduser()
    try:
        try:
            return _read_secret(path)
        except FileNotFoundError:
            _create_secret(path)
        return _read_secret(path)
    except OSError as exc:
        raise ConfigError(
            f"cannot read or create the service secret {path}: {exc.strerror or exc}; fix "
            "the permissions of adp.state-dir or set adp.service.auth.secret-file"
        ) from exc


def hmac_secret(auth: AuthSettings, state_dir: Path, hmac: Sequence[str]) -> bytes:
    """The configured secret file (which must exist) or the embedded default (created)."""
    if auth.secret_file is not None:
        path = Path(auth.secret_file).expanduser()
        if not path.exists():
            raise ConfigError(f"adp.service.auth.secret-file {path} does not exist")
    else:
        path = Path(state_dir) / SECRET_FILE
    secret = load_or_create_secret(path)
    need = max(HMAC_MIN_BYTES[name] for name in hmac)
    if len(secret) < need:
        raise ConfigError(
            f"the service secret {path} holds {len(secret)} bytes; {'/'.join(hmac)} in "
            f"adp.service.auth.algorithms needs at least {need}"
        )
    return secret


def _public_key(path: Path, algorithms: Sequence[str]) -> tuple[Any, tuple[str, ...]]:
    """The PEM public key (or certificate) at ``path`` and the configured algorithms it
    can verify."""
    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read adp.service.auth.public-key {path}: {exc.strerror or exc}"
        ) from exc
    key: Any
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise ConfigError(
                f"adp.service.auth.public-key {path} is not a PEM public key or certificate"
            ) from None
    usable = tuple(a for a in algorithms if isinstance(key, _ASYMMETRIC_KEYS[a]))
    if not usable:
        raise ConfigError(
            f"adp.service.auth.public-key {path} holds a {type(key).__name__.lstrip('_')}, "
            f"which none of adp.service.auth.algorithms {list(algorithms)} uses"
        )
    return key, usable


def _jwks_client(url: str) -> jwt.PyJWKClient:
    """A JWKS client for ``url``: https, or http on a loopback address only (keys fetched
    in clear text could be swapped on the way)."""
    shown = redact_url(url)
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"adp.service.auth.jwks-url {shown} is not an http(s) URL")
    if parsed.scheme == "http" and parsed.hostname not in _LOOPBACK_HOSTS:
        raise ConfigError(
            f"adp.service.auth.jwks-url {shown} is plain http: use https (http is accepted "
            "only on 127.0.0.1 or localhost)"
        )
    check_host(parsed.hostname, field="adp.service.auth.jwks-url", shown=shown)
    return jwt.PyJWKClient(url, timeout=JWKS_TIMEOUT)


def load_keys(
    auth: AuthSettings, state_dir: Path, hmac: Sequence[str], asymmetric: Sequence[str]
) -> VerificationKeys:
    """Load the keys for the configured ``hmac`` and ``asymmetric`` algorithms.

    Raises
    ------
    adp.errors.ConfigError
        When the secret, the public key or the JWKS URL is missing or unusable.
    adp.errors.AccessDeniedError
        When the JWKS URL points at a link-local (instance metadata) address.
    """
    secret = hmac_secret(auth, state_dir, hmac) if hmac else None
    public: Any = None
    public_algorithms: tuple[str, ...] = ()
    jwks = None
    if asymmetric:
        if auth.public_key is not None and auth.jwks_url:
            raise ConfigError(
                "adp.service.auth sets both public-key and jwks-url: keep one of them"
            )
        if auth.public_key is not None:
            public, public_algorithms = _public_key(auth.public_key, asymmetric)
        elif auth.jwks_url:
            jwks, public_algorithms = _jwks_client(auth.jwks_url), tuple(asymmetric)
        else:
            raise ConfigError(
                f"{'/'.join(asymmetric)} in adp.service.auth.algorithms needs "
                "adp.service.auth.public-key (a PEM file) or adp.service.auth.jwks-url"
            )
    return VerificationKeys(secret, public, public_algorithms, jwks)

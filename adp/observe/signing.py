"""Ed25519 keys for the audit trail's checkpoints: writers sign, verifiers hold the public key.

The private key signs each checkpoint of the chain's head (:mod:`adp.observe.checkpoint`).
It comes from ``adp.audit.signing-key`` (a PEM file) or, when that is null, from
``<state-dir>/audit.ed25519``, created once with mode 0600 (its public half is written
beside it as ``audit.ed25519.pub``). A verifier needs only the public key:
``adp.audit.public-key`` (a PEM file, ideally kept where the audit database's writers
cannot change it), else the state directory's ``.pub`` file, else the one derived from the
private key. Keys are made and checked with `cryptography
<https://cryptography.io/en/latest/hazmat/primitives/asymmetric/ed25519/>`_.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from adp.errors import AuditError

__all__ = [
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "Signer",
    "Verifier",
    "key_id",
    "load_signer",
    "load_verifier",
]

logger = logging.getLogger(__name__)

PRIVATE_FILE = "audit.ed25519"
PUBLIC_FILE = "audit.ed25519.pub"


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Verifier:
    """Checks Ed25519 signatures with one public key."""

    public: Ed25519PublicKey
    source: str

    @property
    def key_id(self) -> str:
        """The key's short name (:func:`key_id`)."""
        return key_id(self.public)

    def verify(self, payload: bytes, signature: str) -> bool:
        """Whether ``signature`` (base64) signs ``payload`` under this key."""
        try:
            self.public.verify(base64.b64decode(signature, validate=True), payload)
        except (InvalidSignature, ValueError, TypeError):
            return False
        return True


@dataclass(frozen=True)
class Signer:
    """Signs with one Ed25519 private key."""

    private: Ed25519PrivateKey
    source: str

    @property
    def verifier(self) -> Verifier:
        """The matching :class:`Verifier`."""
        return Verifier(self.private.public_key(), self.source)

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    def sign(self, payload: bytes) -> str:
        """The base64 Ed25519 signature of ``payload``."""
        return base64.b64encode(self.private.sign(payload)).decode()


def _public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` atomically with ``mode``; a file another process made first wins."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
        os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _read_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise AuditError(
            f"cannot read the audit signing key {path}: {exc}; fix its permissions or "
            "adp.audit.signing-key"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise AuditError(
            f"the audit signing key {path} is not an unencrypted PEM private key ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"the audit signing key {path} is not an Ed25519 key")
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning("audit signing key %s is readable by others (mode %o)", path, mode)
    return key


def _read_public(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise AuditError(f"cannot read the audit public key {path}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise AuditError(f"the audit public key {path} is not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"the audit public key {path} is not an Ed25519 key")
    return key


def load_signer(
    state_dir: Path, configured: str | os.PathLike[str] | None = None, *, create: bool = True
) -> Signer | None:
    """The checkpoint signing key: ``configured`` (``adp.audit.signing-key``), else
    ``<state_dir>/audit.ed25519``, created (0600, with its ``.pub``) when ``create``.

    Returns
    -------
    Signer or None
        ``None`` when there is no key and ``create`` is false (read-only use).

    Raises
    ------
    adp.errors.AuditError
        When the key cannot be read or created, or is not an Ed25519 PEM key.
    """
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise AuditError(f"the audit signing key {path} (adp.audit.signing-key) does not exist")
        return Signer(_read_private(path), str(path))
    path = state_dir / PRIVATE_FILE
    if not path.exists():
        if not create:
            return None
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_new(path, pem, 0o600)
        except OSError as exc:
            raise AuditError(
                f"cannot create the audit signing key {path}: {exc}; fix the permissions of "
                "adp.state-dir or set adp.audit.signing-key"
            ) from exc
    key = _read_private(path)
    public = state_dir / PUBLIC_FILE
    if not public.exists():
        try:
            _write_new(public, _public_pem(key.public_key()), 0o644)
        except OSError as exc:
            logger.warning("cannot write the audit public key %s: %s", public, exc)
    return Signer(key, str(path))


def load_verifier(
    state_dir: Path,
    public_key: str | os.PathLike[str] | None = None,
    signing_key: str | os.PathLike[str] | None = None,
) -> Verifier | None:
    """The key that checks checkpoint signatures: ``public_key``
    (``adp.audit.public-key``), else ``<state_dir>/audit.ed25519.pub``, else the public
    half of the signing key (``signing_key`` or ``<state_dir>/audit.ed25519``).

    Returns
    -------
    Verifier or None
        ``None`` when no key is found.

    Raises
    ------
    adp.errors.AuditError
        When a configured key file is missing or unreadable.
    """
    if public_key:
        path = Path(public_key).expanduser()
        if not path.is_file():
            raise AuditError(f"the audit public key {path} (adp.audit.public-key) does not exist")
        return Verifier(_read_public(path), str(path))
    pub = state_dir / PUBLIC_FILE
    if pub.is_file():
        return Verifier(_read_public(pub), str(pub))
    signer = load_signer(state_dir, signing_key, create=False)
    return None if signer is None else signer.verifier

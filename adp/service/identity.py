"""Who is calling the ADP service: bearer JWTs verified with PyJWT.

:class:`TokenVerifier` turns the token of an ``Authorization: Bearer ...`` header into an
:class:`Identity`, or refuses it with an :class:`AuthenticationError` (the service answers
401). The rules, all from ``adp.service.auth``:

- ``exp``, ``iat``, ``sub``, ``aud`` and ``iss`` are required; ``aud`` and ``iss`` must be
  the configured audience and issuer; ``nbf`` is honoured when present; ``leeway`` seconds
  of clock skew are allowed.
- The accepted algorithms come from ``algorithms``, never from the token. ``none`` is
  refused as configuration; an unsigned token is never accepted.
- HMAC algorithms (the embedded default, ``HS256``) use a secret of at least 32 bytes (48
  for HS384, 64 for HS512) read from ``secret-file``, by default
  ``<adp.state-dir>/service.secret``, generated on first use with mode 0600
  (:mod:`adp.service.keys` loads every key).
- Asymmetric algorithms (``RS256``, ``ES256``, ...) use the public key of ``public-key``
  (a PEM file) or the keys published at ``jwks-url`` (an OIDC provider's JWKS). A token
  whose header names an HMAC algorithm is never checked against the public key, so the
  HS/RS confusion attack (an HS256 token "signed" with the public key's PEM) fails.

:func:`issue_token` signs HS256 tokens with the embedded secret (``adp token issue``).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from adp.config import AuthSettings, settings
from adp.errors import AccessDeniedError, AdpError, ConfigError
from adp.redact import redact_url
from adp.service.keys import (
    MIN_SECRET_BYTES,
    SECRET_FILE,
    SUPPORTED_ALGORITHMS,
    VerificationKeys,
    hmac_secret,
    load_keys,
    load_or_create_secret,
    split_algorithms,
)

__all__ = [
    "MIN_SECRET_BYTES",
    "SECRET_FILE",
    "AuthenticationError",
    "Identity",
    "TokenVerifier",
    "issue_token",
    "load_or_create_secret",
    "parse_ttl",
]

#: Claims every token must carry.
REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud", "iss")
#: Tokens longer than this are refused before they are decoded.
MAX_TOKEN_CHARS = 16_384

_TTL = re.compile(r"\s*(\d{1,9})\s*([smhd])\s*")
_TTL_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class AuthenticationError(AccessDeniedError):
    """A bearer token is missing or does not verify (the service answers 401).

    The message is one line saying why, without the token. :attr:`reason` is a short,
    stable code for audit records and metric labels: ``missing``, ``malformed``,
    ``unsigned``, ``algorithm``, ``signature``, ``expired``, ``not-yet-valid``,
    ``missing-claim``, ``claims``, ``audience``, ``issuer``, ``unknown-key``, ``jwks`` or
    ``configuration`` (the service itself cannot verify tokens); ``invalid`` when none was
    given.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    """A verified caller.

    Attributes
    ----------
    subject : str
        The token's ``sub``.
    roles : tuple of str
        The token's ``roles`` claim; ``()`` when it has none.
    issuer : str
        The token's ``iss``.
    expires : datetime
        When the token expires (``exp``, timezone-aware UTC).
    """

    subject: str
    roles: tuple[str, ...]
    issuer: str
    expires: datetime

    def __str__(self) -> str:
        return self.subject


class TokenVerifier:
    """Verifies bearer JWTs against ``adp.service.auth``.

    The algorithm list is checked when the verifier is made. Keys (the secret file, the
    PEM, the JWKS client) are loaded on the first :meth:`verify` and kept; while they
    cannot be loaded, every token is refused with reason ``configuration`` and a message
    saying what to fix, so a fixed file is picked up without a restart. Call
    :meth:`check` at start-up to fail fast instead. Safe to share between threads.

    Parameters
    ----------
    auth : AuthSettings, optional
        Default: ``adp.config.settings().service.auth``.
    state_dir : Path, optional
        Where the embedded secret lives; default ``adp.config.settings().state_dir``.

    Raises
    ------
    adp.errors.ConfigError
        When ``algorithms`` lists ``none`` or an unknown algorithm.
    """

    def __init__(self, auth: AuthSettings | None = None, state_dir: Path | None = None) -> None:
        if auth is None or state_dir is None:
            current = settings()
            auth = auth if auth is not None else current.service.auth
            state_dir = state_dir if state_dir is not None else current.state_dir
        self.auth = auth
        self.state_dir = Path(state_dir)
        self._hmac, self._asymmetric = split_algorithms(auth.algorithms)
        self._keys: VerificationKeys | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls) -> TokenVerifier:
        """A verifier for the current ``adp.service.auth`` and ``adp.state-dir``."""
        current = settings()
        return cls(current.service.auth, current.state_dir)

    def check(self) -> None:
        """Load the keys now.

        Raises
        ------
        adp.errors.ConfigError
            When the secret, public key or JWKS URL is missing or unusable.
        """
        self._load_keys()

    def _load_keys(self) -> VerificationKeys:
        with self._lock:
            if self._keys is None:
                self._keys = load_keys(self.auth, self.state_dir, self._hmac, self._asymmetric)
            return self._keys

    def verify(self, token: str | None) -> Identity:
        """The identity a bearer token proves.

        Parameters
        ----------
        token : str or None
            The token alone (without ``Bearer``); ``None`` or empty when the request had none.

        Returns
        -------
        Identity

        Raises
        ------
        AuthenticationError
            When the token is missing or fails any check; ``reason`` says which.
        """
        token = (token or "").strip()
        if not token:
            raise AuthenticationError(
                "no bearer token: send 'Authorization: Bearer <token>'", "missing"
            )
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationError(
                f"the bearer token is longer than {MAX_TOKEN_CHARS} characters", "malformed"
            )
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError(
                "the bearer token is not a well-formed JWT", "malformed"
            ) from None
        alg = header.get("alg")
        key, algorithms = self._key_for(token, alg)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(algorithms),
                audience=self.auth.audience,
                issuer=self.auth.issuer,
                leeway=self.auth.leeway,
                options={"require": list(REQUIRED_CLAIMS), "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as exc:
            raise _refusal(exc, self.auth) from None
        return _identity(claims)

    def _key_for(self, token: str, alg: Any) -> tuple[Any, tuple[str, ...]]:
        """The key and algorithms to check a token whose header names ``alg``: the HMAC
        secret only for HMAC algorithms, the public key or JWKS only for the others."""
        if isinstance(alg, str) and alg.lower() == "none":
            raise AuthenticationError(
                "the token is unsigned (alg 'none'), which is never accepted", "unsigned"
            )
        if alg not in self._hmac and alg not in self._asymmetric:
            named = alg if alg in SUPPORTED_ALGORITHMS else "an unsupported algorithm"
            raise AuthenticationError(
                f"the token is signed with {named}, which adp.service.auth.algorithms "
                f"{list(self.auth.algorithms)} does not accept",
                "algorithm",
            )
        try:
            keys = self._load_keys()
        except AdpError as exc:  # ConfigError, AccessDeniedError (a refused JWKS host)
            raise AuthenticationError(
                f"the service cannot verify tokens: {exc}", "configuration"
            ) from exc
        if alg in self._hmac:
            return keys.secret, self._hmac
        if keys.jwks is None:
            return keys.public, keys.public_algorithms
        shown = redact_url(str(keys.jwks.uri))
        try:
            return keys.jwks.get_signing_key_from_jwt(token), keys.public_algorithms
        except jwt.PyJWKClientConnectionError:
            raise AuthenticationError(
                f"cannot fetch the signing keys from adp.service.auth.jwks-url {shown}", "jwks"
            ) from None
        except jwt.PyJWKClientError:
            raise AuthenticationError(
                f"no key at adp.service.auth.jwks-url {shown} matches the token's kid",
                "unknown-key",
            ) from None
        except jwt.PyJWTError:
            raise AuthenticationError(
                f"adp.service.auth.jwks-url {shown} does not serve a usable JWK set", "jwks"
            ) from None


def _refusal(exc: jwt.PyJWTError, auth: AuthSettings) -> AuthenticationError:
    """The one-line refusal for a PyJWT error (never with the token in it)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthenticationError("the token has expired", "expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return AuthenticationError(
            "the token is not valid yet (its nbf or iat is in the future; check the clocks "
            "or adp.service.auth.leeway)",
            "not-yet-valid",
        )
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthenticationError(f"the token has no '{exc.claim}' claim", "missing-claim")
    if isinstance(exc, jwt.InvalidAudienceError):
        return AuthenticationError(
            f"the token's audience (aud) is not {auth.audience!r}", "audience"
        )
    if isinstance(exc, jwt.InvalidIssuerError):
        return AuthenticationError(f"the token's issuer (iss) is not {auth.issuer!r}", "issuer")
    if isinstance(exc, jwt.InvalidSignatureError):
        return AuthenticationError("the token's signature does not verify", "signature")
    if isinstance(exc, jwt.InvalidAlgorithmError):
        return AuthenticationError(
            "the token's algorithm does not match the key that verifies it", "algorithm"
        )
    if isinstance(exc, jwt.InvalidIssuedAtError | jwt.exceptions.InvalidSubjectError):
        return AuthenticationError("the token's iat or sub claim has the wrong type", "claims")
    if isinstance(exc, jwt.InvalidKeyError | jwt.PyJWKError):
        return AuthenticationError(
            "the service's key cannot verify this token (wrong type or too short)", "configuration"
        )
    return AuthenticationError("the bearer token is not a well-formed JWT", "malformed")


def _identity(claims: dict[str, Any]) -> Identity:
    subject, issuer = claims["sub"], claims["iss"]
    if not isinstance(subject, str) or not subject.strip():
        raise AuthenticationError("the token's sub claim is empty", "claims")
    roles = claims.get("roles", [])
    if roles is None:
        roles = []
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise AuthenticationError(
            "the token's roles claim must be a list of non-empty strings", "claims"
        )
    try:
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise AuthenticationError("the token's exp claim is not a time", "claims") from None
    return Identity(subject=subject, roles=tuple(roles), issuer=str(issuer), expires=expires)


def issue_token(
    subject: str,
    roles: Sequence[str],
    ttl: timedelta,
    *,
    auth: AuthSettings | None = None,
    state_dir: Path | None = None,
    now: datetime | None = None,
) -> str:
    """A token for the embedded default: HS256, signed with the service's secret.

    Parameters
    ----------
    subject : str
        Who the token is for (``sub``).
    roles : sequence of str
        The ``roles`` claim.
    ttl : timedelta
        How long the token is valid, from ``now``.
    auth : AuthSettings, optional
        Default: ``adp.config.settings().service.auth`` (``aud``, ``iss``, the secret).
    state_dir : Path, optional
        Where the embedded secret lives (created there when missing); default
        ``adp.config.settings().state_dir``.
    now : datetime, optional
        The issue time (timezone-aware); default the current time.

    Returns
    -------
    str
        The token, with ``sub``, ``roles``, ``iat``, ``nbf``, ``exp``, ``aud``, ``iss`` and a
        random ``jti``.

    Raises
    ------
    adp.errors.ConfigError
        When ``adp.service.auth.algorithms`` does not include HS256, the secret is unusable,
        or the subject, roles, ttl or ``now`` are invalid.
    """
    if auth is None or state_dir is None:
        current = settings()
        auth = auth if auth is not None else current.service.auth
        state_dir = state_dir if state_dir is not None else current.state_dir
    hmac, _ = split_algorithms(auth.algorithms)
    if "HS256" not in hmac:
        raise ConfigError(
            f"adp.service.auth.algorithms is {list(auth.algorithms)}: tokens issued by ADP are "
            "HS256, so add HS256 (or get tokens from your identity provider)"
        )
    if not isinstance(subject, str) or not subject.strip():
        raise ConfigError("the token's subject (--sub) must be a non-empty string")
    if isinstance(roles, str) or not all(isinstance(r, str) and r.strip() for r in roles):
        raise ConfigError("the token's roles (--role) must be non-empty strings")
    if ttl <= timedelta(0):
        raise ConfigError(f"the token's ttl must be positive, not {ttl}")
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        raise ConfigError("issue_token(now=...) must be a timezone-aware datetime")
    issued = int(now.timestamp())
    claims = {
        "sub": subject,
        "roles": list(roles),
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
        "aud": auth.audience,
        "iss": auth.issuer,
        "jti": uuid.uuid4().hex,
    }
    secret = hmac_secret(auth, Path(state_dir), hmac)
    return jwt.encode(claims, secret, algorithm="HS256")


def parse_ttl(text: str) -> timedelta:
    """A token lifetime written as a number and a unit: ``90s``, ``30m``, ``8h``, ``2d``.

    Raises
    ------
    adp.errors.ConfigError
        When ``text`` is not of that form or is zero.

    Examples
    --------
    >>> parse_ttl("8h")
    datetime.timedelta(seconds=28800)
    """
    match = _TTL.fullmatch(str(text))
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(
            f"invalid ttl {str(text)[:40]!r}: use a positive number and a unit, like 90s, "
            "30m, 8h or 2d"
        )
    try:
        return timedelta(**{_TTL_UNITS[match.group(2)]: int(match.group(1))})
    except OverflowError:
        raise ConfigError(f"the ttl {text!r} is too long") from None

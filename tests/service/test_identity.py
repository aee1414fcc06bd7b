"""The service's identity: bearer JWTs checked with PyJWT against ``adp.service.auth``
(the JWT matrix of issue 12), the embedded HS256 secret and ``adp token issue``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dask.config
import jwt
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from adp.config import AuthSettings
from adp.errors import AccessDeniedError, ConfigError
from adp.service.identity import (
    AuthenticationError,
    Identity,
    TokenVerifier,
    issue_token,
    load_or_create_secret,
    parse_ttl,
)
from adp.service.token_cli import token as token_command


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand: HMAC-SHA256 over it with ``hmac_key`` (any bytes, even a PEM,
    which PyJWT itself refuses to sign with), or no signature at all."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for the default audience and issuer; ``None`` drops a claim."""
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {
        "sub": "alice",
        "roles": ["analyst"],
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 600,
        "aud": "adp",
        "iss": "adp",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def pem_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "provider.pem"
    path.write_bytes(_public_pem(rsa_key))
    return path


@pytest.fixture
def hs_verifier(tmp_path: Path) -> TokenVerifier:
    """The embedded default: HS256 with the secret generated in a fresh state dir."""
    return TokenVerifier(AuthSettings(), tmp_path / "state")


def _secret_of(verifier: TokenVerifier) -> bytes:
    return load_or_create_secret(verifier.state_dir / "service.secret")


# --- the JWT matrix --------------------------------------------------------------------------


def _short_secret(tmp_path: Path) -> tuple[TokenVerifier, str]:
    secret = tmp_path / "short.secret"
    secret.write_bytes(b"s" * 16)
    secret.chmod(0o600)
    verifier = TokenVerifier(AuthSettings(secret_file=secret), tmp_path / "state")
    return verifier, _forge({"alg": "HS256", "typ": "JWT"}, _claims(), b"s" * 16)


def _tampered(tmp_path: Path) -> tuple[TokenVerifier, str]:
    verifier = TokenVerifier(AuthSettings(), tmp_path / "state")
    good = jwt.encode(_claims(), _secret_of(verifier), algorithm="HS256")
    header, _, signature = good.split(".")
    escalated = _b64(json.dumps(_claims(roles=["operator"])).encode())
    return verifier, f"{header}.{escalated}.{signature}"


def _hs_rs_confusion(tmp_path: Path, pem: Path) -> tuple[TokenVerifier, str]:
    verifier = TokenVerifier(AuthSettings(algorithms=["RS256"], public_key=pem), tmp_path)
    return verifier, _forge({"alg": "HS256", "typ": "JWT"}, _claims(), pem.read_bytes())


def _hs(claims: Callable[[], dict[str, Any]]) -> Callable[[Path, Path], tuple[TokenVerifier, str]]:
    """A case whose claims are made when the test runs (the suite may take longer than a
    token made at import time lives)."""

    def build(tmp_path: Path, pem: Path) -> tuple[TokenVerifier, str]:
        verifier = TokenVerifier(AuthSettings(), tmp_path / "state")
        return verifier, jwt.encode(claims(), _secret_of(verifier), algorithm="HS256")

    return build


def _given(token: str | None) -> Callable[[Path, Path], tuple[TokenVerifier, Any]]:
    return lambda tmp_path, pem: (TokenVerifier(AuthSettings(), tmp_path / "state"), token)


_HOUR = 3600
MATRIX: dict[str, tuple[Callable[[Path, Path], tuple[TokenVerifier, Any]], str]] = {
    "no token": (_given(None), "missing"),
    "alg none": (
        lambda tmp_path, pem: (
            TokenVerifier(AuthSettings(), tmp_path / "state"),
            _forge({"alg": "none", "typ": "JWT"}, _claims(), None),  # made when run
        ),
        "unsigned",
    ),
    "HS/RS confusion": (_hs_rs_confusion, "algorithm"),
    "expired": (_hs(lambda: _claims(iat=1_000_000, nbf=None, exp=1_000_060)), "expired"),
    "missing exp": (_hs(lambda: _claims(exp=None)), "missing-claim"),
    "missing iat": (_hs(lambda: _claims(iat=None)), "missing-claim"),
    "missing sub": (_hs(lambda: _claims(sub=None)), "missing-claim"),
    "missing aud": (_hs(lambda: _claims(aud=None)), "missing-claim"),
    "missing iss": (_hs(lambda: _claims(iss=None)), "missing-claim"),
    "wrong aud": (_hs(lambda: _claims(aud="someone-else")), "audience"),
    "wrong iss": (_hs(lambda: _claims(iss="https://evil.example")), "issuer"),
    "tampered signature": (lambda tmp_path, pem: _tampered(tmp_path), "signature"),
    "secret shorter than 32 bytes": (
        lambda tmp_path, pem: _short_secret(tmp_path),
        "configuration",
    ),
    "not yet valid": (
        _hs(lambda: _claims(nbf=int(datetime.now(UTC).timestamp()) + _HOUR)),
        "not-yet-valid",
    ),
    "garbage": (_given("this-is-not-a-jwt"), "malformed"),
    "roles not a list": (_hs(lambda: _claims(roles="operator")), "claims"),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_the_jwt_matrix_refuses_each_token_with_its_reason(
    case: str, tmp_path: Path, pem_file: Path
) -> None:
    build, reason = MATRIX[case]
    verifier, token = build(tmp_path, pem_file)
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(token)
    error = caught.value
    assert error.reason == reason
    assert isinstance(error, AccessDeniedError) and isinstance(error, PermissionError)
    message = str(error)
    assert "\n" not in message and message
    for part in (token or "").split("."):
        if len(part) > 8:
            assert part not in message  # the token is never echoed


def test_every_refusal_in_the_matrix_says_a_different_why(tmp_path: Path, pem_file: Path) -> None:
    messages = {}
    for case, (build, _) in MATRIX.items():
        folder = tmp_path / case.replace(" ", "_").replace("/", "_")
        folder.mkdir()
        verifier, token = build(folder, pem_file)
        with pytest.raises(AuthenticationError) as caught:
            verifier.verify(token)
        messages[case] = str(caught.value)
    assert len(set(messages.values())) == len(messages), messages
    assert "'exp'" in messages["missing exp"] and "'sub'" in messages["missing sub"]
    assert "32" in messages["secret shorter than 32 bytes"]


def test_an_hs256_token_signed_with_the_public_pem_fails_even_when_hs256_is_accepted(
    tmp_path: Path, pem_file: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    """Both families configured: an HMAC token is checked only against the HMAC secret."""
    auth = AuthSettings(algorithms=["HS256", "RS256"], public_key=pem_file)
    verifier = TokenVerifier(auth, tmp_path / "state")
    forged = _forge({"alg": "HS256", "typ": "JWT"}, _claims(), pem_file.read_bytes())
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(forged)
    assert caught.value.reason == "signature"
    rs = jwt.encode(_claims(sub="bob"), rsa_key, algorithm="RS256")
    hs = issue_token("carol", [], timedelta(minutes=5), auth=auth, state_dir=tmp_path / "state")
    assert [verifier.verify(rs).subject, verifier.verify(hs).subject] == ["bob", "carol"]


def test_an_rs256_token_is_refused_where_only_hs256_is_configured(
    hs_verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(AuthenticationError) as caught:
        hs_verifier.verify(jwt.encode(_claims(), rsa_key, algorithm="RS256"))
    assert caught.value.reason == "algorithm"
    assert "RS256" in str(caught.value)


def test_leeway_allows_that_much_clock_skew_and_no_more(tmp_path: Path) -> None:
    now = int(datetime.now(UTC).timestamp())
    late = _claims(iat=now - 100, nbf=None, exp=now - 10)
    strict = TokenVerifier(AuthSettings(), tmp_path)
    token = jwt.encode(late, _secret_of(strict), algorithm="HS256")
    with pytest.raises(AuthenticationError, match="expired"):
        strict.verify(token)
    assert TokenVerifier(AuthSettings(leeway=60), tmp_path).verify(token).subject == "alice"


# --- tokens that verify ----------------------------------------------------------------------


def test_a_valid_hs256_token_gives_the_callers_identity(hs_verifier: TokenVerifier) -> None:
    exp = int(datetime.now(UTC).timestamp()) + 600
    claims = _claims(sub="alice", roles=["analyst", "operator"], exp=exp)
    identity = hs_verifier.verify(jwt.encode(claims, _secret_of(hs_verifier), algorithm="HS256"))
    assert identity == Identity(
        subject="alice",
        roles=("analyst", "operator"),
        issuer="adp",
        expires=datetime.fromtimestamp(exp, UTC),
    )
    assert str(identity) == "alice"
    no_roles = jwt.encode(_claims(roles=None), _secret_of(hs_verifier), algorithm="HS256")
    assert hs_verifier.verify(no_roles).roles == ()


def test_a_valid_rs256_token_verifies_with_the_configured_pem(
    tmp_path: Path, pem_file: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    auth = AuthSettings(algorithms=["RS256"], public_key=pem_file, audience="api", issuer="idp")
    verifier = TokenVerifier(auth, tmp_path)
    token = jwt.encode(_claims(aud="api", iss="idp", roles=["operator"]), rsa_key, "RS256")
    identity = verifier.verify(token)
    assert (identity.subject, identity.roles, identity.issuer) == ("alice", ("operator",), "idp")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(jwt.encode(_claims(aud="api", iss="idp"), other, "RS256"))
    assert caught.value.reason == "signature"


class _JWKS:
    """A JWKS endpoint on 127.0.0.1 served by a real HTTP server in a thread."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        body = json.dumps({"keys": keys}).encode()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.requests += 1
                if self.path != "/.well-known/jwks.json":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def es_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def jwks(es_key: ec.EllipticCurvePrivateKey) -> Iterator[_JWKS]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(es_key.public_key()))
    server = _JWKS([{**jwk, "kid": "key-1", "use": "sig", "alg": "ES256"}])
    try:
        yield server
    finally:
        server.close()


def test_a_valid_es256_token_verifies_with_keys_from_a_jwks_url(
    tmp_path: Path, jwks: _JWKS, es_key: ec.EllipticCurvePrivateKey
) -> None:
    verifier = TokenVerifier(AuthSettings(algorithms=["ES256"], jwks_url=jwks.url), tmp_path)
    token = jwt.encode(_claims(roles=["analyst"]), es_key, "ES256", headers={"kid": "key-1"})
    identity = verifier.verify(token)
    assert (identity.subject, identity.roles) == ("alice", ("analyst",))
    assert verifier.verify(token) == identity
    assert jwks.requests == 1  # the key set is cached, not fetched per request

    unknown = jwt.encode(_claims(), es_key, "ES256", headers={"kid": "rotated-away"})
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(unknown)
    assert caught.value.reason == "unknown-key"
    stranger = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(_claims(), stranger, "ES256", headers={"kid": "key-1"})
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(forged)
    assert caught.value.reason == "signature"


def test_an_unreachable_jwks_url_refuses_tokens_and_says_so(
    tmp_path: Path, es_key: ec.EllipticCurvePrivateKey
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/jwks.json"
    verifier = TokenVerifier(AuthSettings(algorithms=["ES256"], jwks_url=url), tmp_path)
    with pytest.raises(AuthenticationError) as caught:
        verifier.verify(jwt.encode(_claims(), es_key, "ES256", headers={"kid": "key-1"}))
    assert caught.value.reason == "jwks"
    assert "jwks-url" in str(caught.value)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", [["none"], ["HS256", "none"], ["NONE"]])
def test_none_is_refused_as_configuration(algorithms: list[str], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'none'.*never accepted"):
        TokenVerifier(AuthSettings(algorithms=algorithms), tmp_path)


def test_an_unknown_algorithm_is_refused_with_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['HS257'\].*HS256"):
        TokenVerifier(AuthSettings(algorithms=["HS257"]), tmp_path)


def test_asymmetric_algorithms_need_a_key_source(tmp_path: Path, pem_file: Path) -> None:
    verifier = TokenVerifier(AuthSettings(algorithms=["RS256"]), tmp_path)
    with pytest.raises(ConfigError, match="public-key.*jwks-url"):
        verifier.check()
    both = AuthSettings(algorithms=["RS256"], public_key=pem_file, jwks_url="https://idp/jwks")
    with pytest.raises(ConfigError, match="both"):
        TokenVerifier(both, tmp_path).check()
    es_only = AuthSettings(algorithms=["ES256"], public_key=pem_file)
    with pytest.raises(ConfigError, match="none of adp.service.auth.algorithms"):
        TokenVerifier(es_only, tmp_path).check()


def test_a_jwks_url_must_be_https_unless_on_loopback(tmp_path: Path) -> None:
    auth = AuthSettings(algorithms=["RS256"], jwks_url="http://idp.example.com/jwks")
    with pytest.raises(ConfigError, match="plain http"):
        TokenVerifier(auth, tmp_path).check()


def test_a_verifier_picks_up_a_fixed_secret_without_a_restart(tmp_path: Path) -> None:
    secret = tmp_path / "service.secret"
    secret.write_bytes(b"x" * 40)
    secret.chmod(0o644)
    verifier = TokenVerifier(AuthSettings(secret_file=secret), tmp_path)
    token = jwt.encode(_claims(), b"x" * 40, algorithm="HS256")
    with pytest.raises(AuthenticationError, match="chmod 600") as caught:
        verifier.verify(token)
    assert caught.value.reason == "configuration"
    secret.chmod(0o600)
    assert verifier.verify(token).subject == "alice"


def test_from_settings_reads_adp_service_auth(tmp_path: Path) -> None:
    with dask.config.set({"adp.state-dir": str(tmp_path), "adp.service.auth.audience": "team-api"}):
        verifier = TokenVerifier.from_settings()
        token = issue_token("dave", ["analyst"], timedelta(minutes=5))
    assert verifier.state_dir == tmp_path and verifier.auth.audience == "team-api"
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "team-api"
    assert verifier.verify(token).subject == "dave"


# --- the embedded secret and issuing ---------------------------------------------------------


def test_the_secret_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "state" / "service.secret"
    old = os.umask(0)
    try:
        first = load_or_create_secret(path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load_or_create_secret(path) == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["service.secret"]


def test_racing_processes_all_get_the_same_secret(tmp_path: Path) -> None:
    path = tmp_path / "service.secret"
    barrier = threading.Barrier(8)
    results: list[bytes] = []

    def load() -> None:
        barrier.wait()
        results.append(load_or_create_secret(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 8 and len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["service.secret"]


def test_an_unsafe_or_short_secret_file_is_refused(tmp_path: Path) -> None:
    open_to_all = tmp_path / "open.secret"
    open_to_all.write_bytes(os.urandom(32))
    open_to_all.chmod(0o644)
    with pytest.raises(ConfigError, match=r"open.secret.*group or others.*0644"):
        load_or_create_secret(open_to_all)
    short = tmp_path / "short.secret"
    short.write_bytes(os.urandom(31))
    short.chmod(0o600)
    with pytest.raises(ConfigError, match=r"short.secret holds 31 bytes, fewer than 32"):
        load_or_create_secret(short)


def test_issued_tokens_verify_and_share_one_secret(tmp_path: Path) -> None:
    state = tmp_path / "state"
    now = datetime.now(UTC)
    first = issue_token("alice", ["analyst"], timedelta(hours=8), state_dir=state, now=now)
    second = issue_token("bob", [], timedelta(minutes=1), state_dir=state)
    assert stat.S_IMODE((state / "service.secret").stat().st_mode) == 0o600
    verifier = TokenVerifier(AuthSettings(), state)
    alice, bob = verifier.verify(first), verifier.verify(second)
    assert (alice.subject, alice.roles, bob.subject, bob.roles) == (
        "alice",
        ("analyst",),
        "bob",
        (),
    )
    assert alice.expires == datetime.fromtimestamp(int(now.timestamp()) + 8 * _HOUR, UTC)
    claims = jwt.decode(first, options={"verify_signature": False})
    assert set(claims) == {"sub", "roles", "iat", "nbf", "exp", "aud", "iss", "jti"}
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_issue_token_refuses_without_hs256_and_bad_arguments(tmp_path: Path) -> None:
    rs_only = AuthSettings(algorithms=["RS256"])
    with pytest.raises(ConfigError, match="add HS256"):
        issue_token("alice", [], timedelta(hours=1), auth=rs_only, state_dir=tmp_path)
    with pytest.raises(ConfigError, match="subject"):
        issue_token(" ", [], timedelta(hours=1), state_dir=tmp_path)
    with pytest.raises(ConfigError, match="ttl must be positive"):
        issue_token("alice", [], timedelta(0), state_dir=tmp_path)
    assert not (tmp_path / "service.secret").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("8h", timedelta(hours=8)),
        ("2d", timedelta(days=2)),
        (" 8h ", timedelta(hours=8)),
    ],
)
def test_parse_ttl_reads_a_number_and_a_unit(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["8", "h", "0h", "-1h", "1.5h", "8 hours", "8w", ""])
def test_parse_ttl_refuses_anything_else(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid ttl.*like 90s, 30m, 8h or 2d"):
        parse_ttl(text)


# --- adp token issue -------------------------------------------------------------------------


def test_adp_token_issue_prints_only_a_token_that_verifies(tmp_path: Path) -> None:
    args = ["issue", "--sub", "alice", "--role", "analyst", "--role", "operator", "--ttl", "8h"]
    with dask.config.set({"adp.state-dir": str(tmp_path)}):
        result = CliRunner().invoke(token_command, args)
        assert result.exit_code == 0, result.output
        token = result.stdout.strip()
        assert result.stdout == token + "\n"
        identity = TokenVerifier.from_settings().verify(token)
    assert (identity.subject, identity.roles) == ("alice", ("analyst", "operator"))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 8 * _HOUR


def test_adp_token_issue_reports_a_bad_ttl_in_one_line(tmp_path: Path) -> None:
    with dask.config.set({"adp.state-dir": str(tmp_path)}):
        result = CliRunner().invoke(token_command, ["issue", "--sub", "alice", "--ttl", "soon"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: invalid ttl 'soon'")
    assert "Traceback" not in result.output

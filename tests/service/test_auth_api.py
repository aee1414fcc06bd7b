"""The JWT matrix through the service's HTTP API: every bad token is answered 401 and its
denial is audited (with the reason's code) before the answer; OpenAPI is served."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge_hs256(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 token signed by hand (PyJWT refuses to sign with a PEM or a short key)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


@pytest.fixture
def api(tmp_path: Path, state_dir: Path, client: Any) -> Iterator[tuple[Any, TestClient, bytes]]:
    from adp.config import settings
    from adp.service.api import create_app
    from adp.service.identity import load_or_create_secret
    from adp.service.server import Service

    service = Service.start(settings().service, client=client, run_jobs=False)
    secret = load_or_create_secret(state_dir / "service.secret")
    try:
        yield service, TestClient(create_app(service)), secret
    finally:
        service.close()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"sub": "alice", "roles": ["analyst"], "aud": "adp", "iss": "adp"}
    claims.update(iat=now, exp=now + 600)
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _matrix(secret: bytes) -> dict[str, str | None]:
    good = jwt.encode(_claims(), secret, algorithm="HS256")
    head, body, sig = good.split(".")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "." + body + "."
    return {
        "no token": None,
        "alg none": unsigned,
        "an RS256 token where HS256 is configured": jwt.encode(
            _claims(), rsa_key, algorithm="RS256"
        ),
        "HS256 signed with a public PEM": _forge_hs256(_claims(), public_pem),
        "expired": jwt.encode(_claims(exp=int(time.time()) - 60), secret, algorithm="HS256"),
        "missing exp": jwt.encode(_claims(exp=None), secret, algorithm="HS256"),
        "wrong aud": jwt.encode(_claims(aud="other"), secret, algorithm="HS256"),
        "wrong iss": jwt.encode(_claims(iss="evil"), secret, algorithm="HS256"),
        "tampered signature": f"{head}.{body}.{sig[:-4]}AAAA",
        "a secret shorter than 32 bytes": _forge_hs256(_claims(), b"0123456789abcdef"),
    }


def test_every_bad_token_is_401_and_each_denial_is_audited(api: Any) -> None:
    service, http, secret = api
    matrix = _matrix(secret)
    for case, token in matrix.items():
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        answer = http.get("/jobs", headers=headers)
        assert answer.status_code == 401, (case, answer.text)
        assert answer.json()["detail"], case
        assert token is None or token not in answer.text, f"{case}: the token is echoed"
    denials = [r for r in service.audit_log.records() if r.event_type == "auth.denied"]
    assert len(denials) == len(matrix)
    assert all(r.outcome == "denied" and r.identity == "anonymous" and r.reason for r in denials)
    reasons = [json.loads(r.details)["reason"] for r in denials]
    assert reasons[0] == "missing" and "expired" in reasons and "audience" in reasons
    good = jwt.encode(_claims(), secret, algorithm="HS256")
    who = http.get("/whoami", headers={"Authorization": f"Bearer {good}"})
    assert who.status_code == 200 and who.json()["subject"] == "alice"
    metrics = http.get("/metrics").text
    assert 'adp_service_denials_total{kind="token-missing"} 1.0' in metrics
    assert all("alice" not in line for line in metrics.splitlines() if "denials" in line)


def test_openapi_is_served_with_every_route(api: Any) -> None:
    _, http, _ = api
    paths = set(http.get("/openapi.json").json()["paths"])
    for path in (
        "/jobs",
        "/jobs/{job_id}",
        "/jobs/{job_id}/logs",
        "/jobs/{job_id}/report",
        "/jobs/{job_id}/cancel",
        "/jobs/{job_id}/resume",
    ):
        assert path in paths
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()

"""The WSGI middleware, called directly with a WSGI environ."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any, Callable, Optional
from wsgiref.util import setup_testing_defaults

import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden.wsgi import WSGIMiddleware


def inner_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = json.dumps({"sub": environ["jwtwarden.claims"]["sub"], "cached": environ["jwtwarden.result"].cached})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def call(app: WSGIMiddleware, authorization: Optional[str]) -> tuple[str, dict[str, str], Any]:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = status
        seen["headers"] = dict(headers)

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], json.loads(body)


@pytest.fixture
def app(verifier: jwtwarden.Verifier) -> WSGIMiddleware:
    return WSGIMiddleware(inner_app, verifier, realm="api")


def test_valid_token_reaches_the_app(issuer: Issuer, app: WSGIMiddleware) -> None:
    token = issuer.mint(sub="alice")
    status, _, body = call(app, f"Bearer {token}")
    assert status == "200 OK"
    assert body == {"sub": "alice", "cached": False}
    assert call(app, f"bearer  {token} ")[2] == {"sub": "alice", "cached": True}


def test_invalid_token_gets_401(issuer: Issuer, app: WSGIMiddleware) -> None:
    status, headers, body = call(app, f"Bearer {issuer.mint(exp=int(time.time()) - 3600)}")
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token", error_description="expired"'
    assert headers["Content-Type"] == "application/json"
    assert body == {"error": "invalid_token", "error_description": "expired", "code": 300}


def test_missing_or_malformed_header(app: WSGIMiddleware) -> None:
    status, headers, body = call(app, None)
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert body == {"error": "missing_token"}
    assert call(app, "Basic dXNlcjpwdw==")[0] == "401 Unauthorized"
    status, headers, _ = call(app, "Bearer")
    assert status == "400 Bad Request"
    assert 'error="invalid_request"' in headers["WWW-Authenticate"]
    assert call(app, "Bearer a b")[0] == "400 Bad Request"
    status, _, body = call(app, "Bearer not.a.token")
    assert status == "401 Unauthorized" and body["code"] == 102


def test_keys_unavailable_gets_503(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.fault("status", status=500)
    with jwtwarden.Verifier(iss.config()) as v:
        status, headers, body = call(WSGIMiddleware(inner_app, v), f"Bearer {iss.mint()}")
    assert status == "503 Service Unavailable"
    assert headers["Retry-After"] == "5"
    assert "WWW-Authenticate" not in headers
    assert body == {"error": "temporarily_unavailable", "code": 400}


def test_options(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    fresh = WSGIMiddleware(inner_app, verifier, fresh=True)
    assert call(fresh, f"Bearer {token}")[2]["cached"] is False
    assert call(fresh, f"Bearer {token}")[2]["cached"] is False
    pinned = WSGIMiddleware(inner_app, verifier, issuer="https://other.example")
    status, _, body = call(pinned, f"Bearer {token}")
    assert status == "401 Unauthorized" and body["error_description"] == "unknown_issuer"


def test_closed_verifier_is_a_server_error(issuer: Issuer) -> None:
    v = jwtwarden.Verifier(issuer.config())
    v.close()
    status, _, body = call(WSGIMiddleware(inner_app, v), f"Bearer {issuer.mint()}")
    assert status == "500 Internal Server Error"
    assert body == {"error": "server_error", "code": 501}

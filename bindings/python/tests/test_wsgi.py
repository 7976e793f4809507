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
    claims, result = environ.get("jwtwarden.claims"), environ.get("jwtwarden.result")
    body = json.dumps({"sub": claims and claims["sub"], "cached": result and result.cached})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]


def call(
    app: WSGIMiddleware, authorization: Optional[str], method: str = "GET", path: str = "/"
) -> tuple[str, dict[str, str], Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
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
    assert headers["Cache-Control"] == "no-store"
    assert body["error"] == "expired" and body["code"] == 300 and body["category"] == "policy" and body["message"]


def test_missing_or_malformed_header(app: WSGIMiddleware) -> None:
    status, headers, body = call(app, None)
    assert status == "401 Unauthorized"
    assert headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert body == {"error": "missing_token", "code": None, "category": "request", "message": "a bearer token is required"}
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
    assert body["error"] == "keys_unavailable" and body["code"] == 400 and body["category"] == "keys_unavailable"


def test_fresh_and_pinned_issuer(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    fresh = WSGIMiddleware(inner_app, verifier, fresh=True)
    assert call(fresh, f"Bearer {token}")[2]["cached"] is False
    assert call(fresh, f"Bearer {token}")[2]["cached"] is False
    pinned = WSGIMiddleware(inner_app, verifier, issuer="https://other.example")
    status, _, body = call(pinned, f"Bearer {token}")
    assert status == "401 Unauthorized" and body["error"] == "unknown_issuer"
    assert call(WSGIMiddleware(inner_app, verifier, issuer=issuer.url), f"Bearer {token}")[0] == "200 OK"


def test_fresh_routes(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    app = WSGIMiddleware(
        inner_app, verifier, fresh_paths=["/admin/*"], fresh_if=lambda environ: environ["REQUEST_METHOD"] == "DELETE"
    )
    assert call(app, f"Bearer {token}", path="/orders")[2]["cached"] is False  # first time
    assert call(app, f"Bearer {token}", path="/orders")[2]["cached"] is True
    assert call(app, f"Bearer {token}", path="/admin/users")[2]["cached"] is False
    assert call(app, f"Bearer {token}", "DELETE", "/orders")[2]["cached"] is False
    assert call(app, f"Bearer {token}", "GET", "/orders")[2]["cached"] is True


def test_open_routes(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    app = WSGIMiddleware(
        inner_app,
        verifier,
        skip_paths=["/healthz", "/static/*"],
        skip_if=lambda environ: environ.get("HTTP_X_INTERNAL") == "yes",
    )
    for path in ("/healthz", "/static/", "/static/app.js"):
        status, _, body = call(app, None, path=path)
        assert status == "200 OK" and body == {"sub": None, "cached": None}, path
    for path in ("/healthz/", "/", "/stat"):
        assert call(app, None, path=path)[0] == "401 Unauthorized", path
    environ: dict[str, Any] = {"HTTP_X_INTERNAL": "yes", "PATH_INFO": "/orders"}
    setup_testing_defaults(environ)
    assert b"".join(app(environ, lambda status, headers: None)) == b'{"sub": null, "cached": null}'
    # An open route is not verified, even with a token: no claims.
    assert call(app, f"Bearer {issuer.mint()}", path="/healthz")[2] == {"sub": None, "cached": None}
    with pytest.raises(TypeError):
        WSGIMiddleware(inner_app, verifier, skip_paths="/healthz")


def test_options_requests(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    default = WSGIMiddleware(inner_app, verifier)
    assert call(default, None, "OPTIONS", "/orders")[0] == "200 OK"
    strict = WSGIMiddleware(inner_app, verifier, authenticate_options=True)
    assert call(strict, None, "OPTIONS", "/orders")[0] == "401 Unauthorized"
    assert call(strict, f"Bearer {issuer.mint(sub='bob')}", "OPTIONS", "/orders")[2]["sub"] == "bob"


def test_closed_verifier_is_a_server_error(issuer: Issuer) -> None:
    v = jwtwarden.Verifier(issuer.config())
    v.close()
    status, _, body = call(WSGIMiddleware(inner_app, v), f"Bearer {issuer.mint()}")
    assert status == "500 Internal Server Error"
    assert body == {
        "error": "invalid_argument",
        "code": 501,
        "category": "usage",
        "message": "token verification failed on the server",
    }

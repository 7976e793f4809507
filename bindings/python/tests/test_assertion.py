"""Inherited trust in Python: ``Verifier.verify_assertion`` and the WSGI and
ASGI middlewares accepting an edge's assertion on the routes that allow it.
The test issuer plays the edge: its Ed25519 key signs assertions (PyJWT, an
independent JWS library) for ``edge-1``, configured as an issuer of kind
``"assertion"``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Callable, Optional
from wsgiref.util import setup_testing_defaults

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import jwtwarden
from conftest import Issuer
from jwtwarden.asgi import ASGIMiddleware
from jwtwarden.wsgi import WSGIMiddleware

HEADER = "X-Jwtwarden-Assertion"


class Edge:
    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.kid = issuer.add_key("EdDSA")
        self.key, _ = issuer.private_key(self.kid)

    def assertion(self, method: str, path: str, verified_ago: int = 0, key: Any = None) -> str:
        now = int(time.time())
        claims = {
            "iss": "edge-1",
            "aud": "orders",
            "iat": now,
            "exp": now + 30,
            "jti": uuid.uuid4().hex,
            "htm": method,
            "htu": path,
            "verified_at": now - verified_ago,
            "cached": True,
            "fresh": False,
            "orig": {"iss": self.issuer.url, "sub": "alice", "jti": "t-1"},
        }
        headers = {"kid": self.kid, "typ": "jwtwarden-assertion+jwt"}
        return jwt.encode(claims, key or self.key, algorithm="EdDSA", headers=headers)


@pytest.fixture
def edge(new_issuer: Callable[..., Issuer]) -> Edge:
    return Edge(new_issuer())


@pytest.fixture
def service(edge: Edge) -> Iterator[jwtwarden.Verifier]:
    config = edge.issuer.config()
    config["issuers"].append(
        {
            "kind": "assertion",
            "issuer": "edge-1",
            "jwks_uri": edge.issuer.jwks_uri,
            "audiences": ["orders"],
            "fresh_within_secs": 5,
        }
    )
    v = jwtwarden.Verifier(config)
    yield v
    v.close()


def test_verify_assertion(edge: Edge, service: jwtwarden.Verifier) -> None:
    a = edge.assertion("GET", "/orders/7")
    got = service.verify_assertion(a, method="GET", path="/orders/7?page=2")
    assert isinstance(got, jwtwarden.Inherited)
    assert got.inherited and got.edge == "edge-1" and got.cached and not got.fresh
    assert got.original["sub"] == "alice"
    assert got.claims["htu"] == "/orders/7"
    assert abs(got.verified_at - time.time()) < 10
    with pytest.raises(jwtwarden.RevokedTokenError):
        service.verify_assertion(a, method="GET", path="/orders/7")
    # An assertion is not a token, nor a token an assertion.
    with pytest.raises(jwtwarden.JwtWardenError) as e:
        service.verify(edge.assertion("GET", "/x"))
    assert e.value.kind == "unknown_issuer"
    with pytest.raises(jwtwarden.JwtWardenError) as e:
        service.verify_assertion(edge.issuer.mint(), method="GET", path="/x")
    assert e.value.kind == "unknown_issuer"
    with pytest.raises(jwtwarden.InvalidAudienceError):
        service.verify_assertion(edge.assertion("GET", "/a"), method="GET", path="/b")
    with pytest.raises(jwtwarden.JwtWardenError) as e:
        service.verify_assertion(edge.assertion("POST", "/pay", verified_ago=60), method="POST", path="/pay", fresh=True)
    assert e.value.kind == "token_lifetime_exceeded"


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    inherited, claims = environ.get("jwtwarden.inherited"), environ.get("jwtwarden.claims")
    body = {"inherited": inherited and inherited.original["sub"], "direct": claims and claims["sub"]}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def wsgi_call(app: WSGIMiddleware, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    for k, v in headers.items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    seen: dict[str, Any] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])

    body = b"".join(app(environ, start_response))
    return seen["status"], json.loads(body)


class ASGIApp:
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        inherited, claims = scope.get("jwtwarden.inherited"), scope.get("jwtwarden.claims")
        body = {"inherited": inherited and inherited.original["sub"], "direct": claims and claims["sub"]}
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def asgi_call(app: ASGIMiddleware, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "path": path, "method": method, "headers": hdrs}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], json.loads(sent[1]["body"])


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_middleware_accepts_assertions_by_route(kind: str, edge: Edge, service: jwtwarden.Verifier) -> None:
    opts: dict[str, Any] = {"realm": "orders", "accept_assertion": ["/orders/*", "/pay"], "fresh_paths": ["/pay"]}
    if kind == "wsgi":
        wapp = WSGIMiddleware(wsgi_app, service, **opts)

        def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            return wsgi_call(wapp, method, path, headers)
    else:
        aapp = ASGIMiddleware(ASGIApp(), service, **opts)

        def call(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            return asgi_call(aapp, method, path, headers)

    a = edge.assertion("GET", "/orders/7")
    assert call("GET", "/orders/7", {HEADER: a}) == (200, {"inherited": "alice", "direct": None})
    # Replayed: to the same request, another path, another method.
    status, body = call("GET", "/orders/7", {HEADER: a})
    assert (status, body["error"]) == (401, "revoked")
    b = edge.assertion("GET", "/orders/7")
    assert call("GET", "/orders/8", {HEADER: b})[1]["error"] == "invalid_audience"
    assert call("DELETE", "/orders/7", {HEADER: b})[1]["error"] == "invalid_audience"
    # Forged by the client: the edge's claims and kid, its own key.
    forged = edge.assertion("GET", "/orders/7", key=Ed25519PrivateKey.generate())
    status, body = call("GET", "/orders/7", {HEADER: forged})
    assert (status, body["error"]) == (401, "invalid_signature")
    # The header on a route that does not accept assertions is ignored; an
    # assertion sent as a bearer token is refused.
    c = edge.assertion("GET", "/admin")
    status, body = call("GET", "/admin", {HEADER: c})
    assert status == 401 and body["code"] is None
    status, body = call("GET", "/admin", {"Authorization": f"Bearer {c}"})
    assert (status, body["error"]) == (401, "unknown_issuer")
    user = edge.issuer.mint(sub="bob")
    assert call("GET", "/admin", {"Authorization": f"Bearer {user}"}) == (200, {"inherited": None, "direct": "bob"})
    assert call("GET", "/orders/9", {"Authorization": f"Bearer {user}"}) == (200, {"inherited": None, "direct": "bob"})
    # A fresh route takes inherited trust only within fresh_within_secs.
    stale = edge.assertion("POST", "/pay", verified_ago=60)
    assert call("POST", "/pay", {HEADER: stale})[1]["error"] == "token_lifetime_exceeded"
    assert call("POST", "/pay", {HEADER: edge.assertion("POST", "/pay")})[0] == 200


def test_wsgi_under_script_name_binds_the_request_as_received(edge: Edge, service: jwtwarden.Verifier) -> None:
    app = WSGIMiddleware(wsgi_app, service, accept_assertion=["/orders/*"])

    def call(assertion: str) -> int:
        environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/api", "PATH_INFO": "/orders/7"}
        setup_testing_defaults(environ)
        environ["HTTP_X_JWTWARDEN_ASSERTION"] = assertion
        seen: dict[str, Any] = {}

        def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
            seen["status"] = int(status.split()[0])

        b"".join(app(environ, start_response))
        return int(seen["status"])

    assert call(edge.assertion("GET", "/api/orders/7")) == 200
    assert call(edge.assertion("GET", "/orders/7")) == 401


def test_asgi_under_root_path_binds_the_request_as_received(edge: Edge, service: jwtwarden.Verifier) -> None:
    app = ASGIMiddleware(ASGIApp(), service, accept_assertion=["/orders/*"])

    def call(assertion: str) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            # A server whose path leaves root_path out (routes are matched
            # on it, as skip_paths are); the request received is both.
            "root_path": "/api",
            "path": "/orders/7",
            "method": "GET",
            "headers": [(b"x-jwtwarden-assertion", assertion.encode())],
        }
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        return int(sent[0]["status"])

    assert call(edge.assertion("GET", "/api/orders/7")) == 200
    assert call(edge.assertion("GET", "/orders/7")) == 401

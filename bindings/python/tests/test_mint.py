"""Python as the edge: the WSGI and ASGI middlewares, given a
``jwtwarden.Minter``, verify the client's token and hand the application
(typically a proxy to the upstream) a verification assertion in the
assertion header, bound to the request's method and path. The upstream is a
second Verifier configured with this edge as an issuer of kind
``"assertion"`` (its public key inline); PyJWT checks the format."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Callable, Optional
from wsgiref.util import setup_testing_defaults

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import jwtwarden
from conftest import Issuer
from jwtwarden.asgi import ASGIMiddleware
from jwtwarden.wsgi import WSGIMiddleware

HEADER = "X-Jwtwarden-Assertion"
FORGED = "forged.assertion.value"


class World:
    """The edge's verifier and minter, and the upstream's verifier."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        key = Ed25519PrivateKey.generate()
        self.public = key.public_key()
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        config = issuer.config()
        config["assertion"] = {"name": "py-edge", "current": {"kid": "pe-1", "pem": pem}}
        self.edge = jwtwarden.Verifier(config)
        self.minter = jwtwarden.Minter(config)
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        jwk = {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "pe-1", "x": x}
        self.upstream = jwtwarden.Verifier(
            {"issuers": [{"kind": "assertion", "issuer": "py-edge", "jwks": {"keys": [jwk]}, "audiences": ["orders"]}]}
        )

    def close(self) -> None:
        self.edge.close()
        self.upstream.close()


@pytest.fixture
def world(issuer: Issuer) -> Iterator[World]:
    w = World(issuer)
    yield w
    w.close()


class Upstream:
    """What reached the application: the assertion header of each request."""

    def __init__(self) -> None:
        self.seen: list[Optional[list[str]]] = []


def wsgi_edge(world: World, up: Upstream) -> WSGIMiddleware:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        value = environ.get("HTTP_X_JWTWARDEN_ASSERTION")
        up.seen.append(None if value is None else [value])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return WSGIMiddleware(app, world.edge, skip_paths=["/healthz"], minter=world.minter, mint_audience="orders")


def wsgi_call(app: WSGIMiddleware, method: str, path: str, headers: dict[str, str]) -> int:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    for k, v in headers.items():
        environ["HTTP_" + k.upper().replace("-", "_")] = v
    seen: dict[str, int] = {}

    def start_response(status: str, hdrs: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])

    b"".join(app(environ, start_response))
    return seen["status"]


def asgi_edge(world: World, up: Upstream) -> ASGIMiddleware:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        values = [bytes(v).decode() for k, v in scope["headers"] if bytes(k).lower() == HEADER.lower().encode()]
        up.seen.append(values or None)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return ASGIMiddleware(app, world.edge, skip_paths=["/healthz"], minter=world.minter, mint_audience="orders")


def asgi_call(app: ASGIMiddleware, method: str, path: str, headers: dict[str, str]) -> int:
    hdrs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "path": path, "method": method, "headers": hdrs}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"])


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_edge_mints_for_the_upstream(world: World, kind: str) -> None:
    up = Upstream()
    call: Callable[[str, str, dict[str, str]], int]
    if kind == "wsgi":
        wsgi = wsgi_edge(world, up)
        call = lambda m, p, h: wsgi_call(wsgi, m, p, h)  # noqa: E731
    else:
        asgi = asgi_edge(world, up)
        call = lambda m, p, h: asgi_call(asgi, m, p, h)  # noqa: E731
    bearer = {"Authorization": "Bearer " + world.issuer.mint(sub="alice")}

    # Allowed (a miss, then a cache hit): the application sees an assertion
    # that the upstream verifies, bound to the method and path.
    for _ in range(2):
        assert call("GET", "/orders/7", bearer) == 200
        seen = up.seen[-1]
        assert seen is not None and len(seen) == 1
        got = world.upstream.verify_assertion(seen[0], method="GET", path="/orders/7")
        assert got.inherited and got.edge == "py-edge" and got.original["sub"] == "alice"
    assert seen is not None
    a = seen[0]
    claims = jwt.decode(a, world.public, algorithms=["EdDSA"], audience="orders", issuer="py-edge")
    assert claims["htm"] == "GET" and claims["htu"] == "/orders/7"
    # Twice, or replayed to another path or method: refused.
    with pytest.raises(jwtwarden.RevokedTokenError):
        world.upstream.verify_assertion(a, method="GET", path="/orders/7")
    assert call("GET", "/orders/7", bearer) == 200
    b = up.seen[-1]
    assert b is not None
    with pytest.raises(jwtwarden.InvalidAudienceError):
        world.upstream.verify_assertion(b[0], method="GET", path="/orders/8")
    with pytest.raises(jwtwarden.InvalidAudienceError):
        world.upstream.verify_assertion(b[0], method="DELETE", path="/orders/7")

    # A client-set header is replaced on an allowed request, removed on an
    # open route.
    assert call("POST", "/orders", {**bearer, HEADER: FORGED}) == 200
    seen = up.seen[-1]
    assert seen is not None and len(seen) == 1 and seen[0] != FORGED
    world.upstream.verify_assertion(seen[0], method="POST", path="/orders")
    assert call("GET", "/healthz", {HEADER: FORGED}) == 200
    assert up.seen[-1] is None

    # A refused token, or none, reaches nothing.
    before = len(up.seen)
    token = world.issuer.mint(sub="alice")
    assert call("GET", "/orders/7", {"Authorization": "Bearer " + token[:-4] + "AAAA", HEADER: FORGED}) == 401
    assert call("GET", "/orders/7", {HEADER: FORGED}) == 401
    assert call("GET", "/orders/7", {"Authorization": "Bearer " + world.issuer.mint(aud="other")}) == 401
    assert len(up.seen) == before


def test_minter_needs_an_assertion_section(issuer: Issuer) -> None:
    with pytest.raises(jwtwarden.InvalidConfigError):
        jwtwarden.Minter(issuer.config())

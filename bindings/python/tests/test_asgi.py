"""The ASGI middleware, called directly with a scope, receive and send."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import MutableMapping
from typing import Any, Optional

import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden.asgi import ASGIMiddleware

Message = MutableMapping[str, Any]


class InnerApp:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.threads: list[int] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.threads.append(threading.get_ident())
        if scope["type"] == "lifespan":
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        claims, result = scope.get("jwtwarden.claims"), scope.get("jwtwarden.result")
        body = json.dumps({"sub": claims and claims["sub"], "cached": result and result.cached}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def run(
    app: ASGIMiddleware,
    authorization: Optional[str],
    scope_type: str = "http",
    method: str = "GET",
    path: str = "/",
    extra: Optional[list[tuple[bytes, bytes]]] = None,
) -> list[Message]:
    headers = [(b"host", b"test"), *(extra or [])]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    scope = {"type": scope_type, "asgi": {"version": "3.0"}, "path": path, "method": method, "headers": headers}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def response(sent: list[Message]) -> tuple[int, dict[bytes, bytes], Any]:
    start, body = sent
    assert start["type"] == "http.response.start" and body["type"] == "http.response.body"
    return start["status"], dict(start["headers"]), json.loads(body["body"])


@pytest.mark.parametrize("offload", ["anyio", "asyncio", "inline"])
def test_valid_token_reaches_the_app(
    issuer: Issuer, verifier: jwtwarden.Verifier, offload: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if offload == "asyncio":
        monkeypatch.setitem(sys.modules, "anyio.to_thread", None)  # as if anyio were not installed
    inner = InnerApp()
    app = ASGIMiddleware(inner, verifier, offload=offload != "inline")
    token = issuer.mint(sub="alice")
    status, _, body = response(run(app, f"Bearer {token}"))
    assert status == 200
    assert body == {"sub": "alice", "cached": False}
    assert inner.scopes[0]["jwtwarden.claims"]["sub"] == "alice"
    assert inner.scopes[0]["jwtwarden"] is inner.scopes[0]["jwtwarden.claims"]  # the old key, kept
    assert response(run(app, f"Bearer {token}"))[2]["cached"] is True


def test_invalid_token_gets_401(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    inner = InnerApp()
    app = ASGIMiddleware(inner, verifier, realm="api")
    status, headers, body = response(run(app, f"Bearer {issuer.mint(aud='other')}"))
    assert status == 401
    assert (
        headers[b"www-authenticate"]
        == b'Bearer realm="api", error="invalid_token", error_description="invalid_audience"'
    )
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"cache-control"] == b"no-store"
    assert body["error"] == "invalid_audience" and body["code"] == 304 and body["category"] == "policy"
    status, headers, body = response(run(app, None))
    assert status == 401 and headers[b"www-authenticate"] == b'Bearer realm="api"'
    assert inner.scopes == []


def test_websocket(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    inner = InnerApp()
    app = ASGIMiddleware(inner, verifier)
    assert run(app, "Bearer x.y.z", "websocket") == [{"type": "websocket.close", "code": 1008}]
    assert run(app, f"Bearer {issuer.mint()}", "websocket") == [{"type": "websocket.accept"}]
    assert inner.scopes[0]["jwtwarden.claims"]["sub"] == "user"


def test_options(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    app = ASGIMiddleware(
        InnerApp(),
        verifier,
        realm="api",
        skip_paths=["/docs", "/docs/*", "/openapi.json"],
        skip_if=lambda scope: (b"x-internal", b"yes") in scope["headers"],
        fresh_paths=["/admin/*"],
        fresh_if=lambda scope: scope["method"] == "DELETE",
    )
    for path in ("/docs", "/docs/oauth2-redirect", "/openapi.json"):
        assert response(run(app, None, path=path))[:3:2] == (200, {"sub": None, "cached": None}), path
    assert response(run(app, None, path="/openapi.jsonx"))[0] == 401
    assert response(run(app, None, extra=[(b"x-internal", b"yes")]))[0] == 200
    # OPTIONS (CORS preflight) passes by default; authenticate_options=True verifies it.
    assert response(run(app, None, method="OPTIONS"))[0] == 200
    strict = ASGIMiddleware(InnerApp(), verifier, authenticate_options=True)
    assert response(run(strict, None, method="OPTIONS"))[0] == 401
    # fresh routes
    assert response(run(app, f"Bearer {token}"))[2]["cached"] is False
    assert response(run(app, f"Bearer {token}"))[2]["cached"] is True
    assert response(run(app, f"Bearer {token}", path="/admin/x"))[2]["cached"] is False
    assert response(run(app, f"Bearer {token}", method="DELETE"))[2]["cached"] is False
    assert response(run(ASGIMiddleware(InnerApp(), verifier, fresh=True), f"Bearer {token}"))[2]["cached"] is False
    # pinned issuer
    pinned = ASGIMiddleware(InnerApp(), verifier, issuer="https://other.example")
    status, _, body = response(run(pinned, f"Bearer {token}"))
    assert status == 401 and body["error"] == "unknown_issuer"
    # open routes apply to WebSocket handshakes too
    assert run(app, None, "websocket", path="/docs") == [{"type": "websocket.accept"}]
    with pytest.raises(TypeError):
        ASGIMiddleware(InnerApp(), verifier, fresh_paths="/admin/*")


def test_two_authorization_headers_are_a_bad_request(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    sent = run(ASGIMiddleware(InnerApp(), verifier), f"Bearer {token}", extra=[(b"Authorization", b"Bearer x")])
    status, _, body = response(sent)
    assert status == 400 and body["message"] == "more than one credentials header"


def test_lifespan_passes_through(verifier: jwtwarden.Verifier) -> None:
    inner = InnerApp()
    run(ASGIMiddleware(inner, verifier), None, "lifespan")
    assert [s["type"] for s in inner.scopes] == ["lifespan"]


def test_the_event_loop_keeps_running_during_a_slow_verification(
    new_issuer: Any,
) -> None:
    """An unknown kid makes the verifier fetch (here: slowly); with offload the
    loop serves other work meanwhile."""
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        app = ASGIMiddleware(InnerApp(), v)
        new_kid = iss.add_key("RS256")
        token = iss.mint(new_kid)
        iss.fault("delay", delay_ms=1500)
        ticks = 0

        async def main() -> list[Message]:
            nonlocal ticks
            sent: list[Message] = []
            scope = {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}

            async def receive() -> Message:
                return {"type": "http.request"}

            async def send(m: Message) -> None:
                sent.append(m)

            task = asyncio.ensure_future(app(scope, receive, send))
            while not task.done():
                ticks += 1
                await asyncio.sleep(0.01)
            await task
            return sent

        sent = asyncio.run(main())
        assert response(sent)[0] == 200
        assert ticks > 5, "the event loop was blocked during the verification"


def test_hits_and_early_refusals_are_decided_on_the_loop(
    issuer: Issuer, verifier: jwtwarden.Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The core's decision runs on the loop without waiting; only a decision
    that needs a signature check goes to the worker pool, and a hit neither
    hops threads nor releases the GIL."""
    from jwtwarden import _aio, _native

    hops: list[int] = []
    real = _aio._in_thread

    async def counting(fn: Any) -> Any:
        hops.append(1)
        return await real(fn)

    monkeypatch.setattr(_aio, "_in_thread", counting)
    app = ASGIMiddleware(InnerApp(), verifier, skip_paths=["/docs/*"], fresh_paths=["/admin/*"])
    token = issuer.mint(sub="alice")
    assert response(run(app, f"Bearer {token}", path="/orders"))[2]["cached"] is False
    assert len(hops) == 1, "a miss checks a signature in the pool"
    detached = _native._detached_calls()
    for _ in range(5):
        assert response(run(app, f"Bearer {token}", path="/orders"))[2]["cached"] is True
    for path, auth in (("/docs/x", None), ("/docs/..;/x", None), ("/x", "Bearer\tabc"), ("/x", "Bearer a.b")):
        assert response(run(app, auth, path=path))[0] in (200, 400, 401, 403)
    assert len(hops) == 1, "hits, open routes and early refusals are decided inline"
    assert _native._detached_calls() == detached, "and keep the GIL"
    # A fresh route checks the signature every time: in the pool.
    assert response(run(app, f"Bearer {token}", path="/admin/x"))[2]["cached"] is False
    assert len(hops) == 2

"""ASGI middleware: require a valid bearer token on HTTP and WebSocket
connections, except on the routes you leave open (lifespan and other scopes
pass through).

::

    from jwtwarden.asgi import ASGIMiddleware

    app.add_middleware(                                      # FastAPI / Starlette
        ASGIMiddleware, verifier=verifier,
        skip_paths=["/docs", "/docs/*", "/openapi.json", "/healthz"],
    )
    # in an endpoint: request.scope["jwtwarden.claims"]

On success the claims are in ``scope["jwtwarden.claims"]`` (also, for
compatibility, ``scope["jwtwarden"]``) and the full
:class:`~jwtwarden.VerifiedToken` in ``scope["jwtwarden.result"]``. On failure
the application is not called: HTTP gets the response of the HTTP contract
(docs/http.md, the same as the WSGI and Go middleware: 401 with
``WWW-Authenticate: Bearer``, 400 ``invalid_request``, 503 with
``Retry-After``; a JSON body, ``Cache-Control: no-store``); a WebSocket
handshake is rejected with ``websocket.close`` code 1008 (policy violation).

**Not blocking the event loop.** A cache hit takes about a microsecond, but a
miss checks a signature (tens of microseconds) and a token with an unknown
``kid`` may wait for one JWKS fetch (up to ``http.timeout_ms``). By default
(``offload=True``) every verification therefore runs in a worker thread
(``anyio.to_thread.run_sync`` when anyio is installed, as with Starlette and
FastAPI, else the asyncio default executor); the engine releases the GIL, so
the loop keeps serving meanwhile. ``offload=False`` verifies inline on the
loop: it saves the thread hop (tens of microseconds) but lets an unknown
``kid`` stall every connection of that loop for up to one fetch.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ._http import Refusal, Routes, bearer_token, refusal_for
from ._native import VerifiedToken, Verifier
from .exceptions import JwtWardenError

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _run_in_thread(fn: Callable[[], VerifiedToken]) -> VerifiedToken:
    """Run ``fn`` in a worker thread of whichever async library is running."""
    try:
        import anyio.to_thread
    except ImportError:
        return await asyncio.get_running_loop().run_in_executor(None, fn)
    return await anyio.to_thread.run_sync(fn)


class ASGIMiddleware:
    """Wraps an ASGI application; see the module documentation.

    :param app: the ASGI application to protect.
    :param verifier: the :class:`~jwtwarden.Verifier` to use.
    :param issuer: verify for this configured issuer only (default: by the token's ``iss``).
    :param realm: ``realm`` in the ``WWW-Authenticate`` challenge (default: none).
    :param skip_paths: routes left open (no token needed, no claims in the scope):
        exact paths (``"/openapi.json"``), or prefixes ending with ``*``
        (``"/docs/*"``), matched against ``scope["path"]``.
    :param skip_if: a predicate on the scope; true leaves the connection open.
    :param authenticate_options: also require a token on ``OPTIONS`` requests
        (default: ``OPTIONS``, i.e. CORS preflight, passes through).
    :param fresh: skip the cache and check the signature on every request.
    :param fresh_paths: skip the cache on these routes only (same patterns as ``skip_paths``).
    :param fresh_if: a predicate on the scope; true skips the cache for that request.
    :param offload: verify in a worker thread (default) or inline on the event loop.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        issuer: Optional[str] = None,
        realm: Optional[str] = None,
        skip_paths: Sequence[str] = (),
        skip_if: Optional[Callable[[Scope], bool]] = None,
        authenticate_options: bool = False,
        fresh: bool = False,
        fresh_paths: Sequence[str] = (),
        fresh_if: Optional[Callable[[Scope], bool]] = None,
        offload: bool = True,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.issuer = issuer
        self.realm = realm
        self.routes: Routes[Scope] = Routes(
            skip_paths=skip_paths,
            skip_if=skip_if,
            authenticate_options=authenticate_options,
            fresh=fresh,
            fresh_paths=fresh_paths,
            fresh_if=fresh_if,
        )
        self.offload = offload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        if self.routes.open(method, path, scope):
            await self.app(scope, receive, send)
            return
        token = bearer_token(_headers(scope, b"authorization"), self.realm)
        if isinstance(token, Refusal):
            await self._refuse(scope, send, token)
            return
        fresh = self.routes.wants_fresh(path, scope)
        verify = functools.partial(self.verifier.verify_full, token, issuer=self.issuer, fresh=fresh)
        try:
            result = await _run_in_thread(verify) if self.offload else verify()
        except JwtWardenError as e:
            await self._refuse(scope, send, refusal_for(e, self.realm))
            return
        scope["jwtwarden.claims"] = result.claims
        scope["jwtwarden"] = result.claims
        scope["jwtwarden.result"] = result
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, refusal: Refusal) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": refusal.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in refusal.headers],
            }
        )
        await send({"type": "http.response.body", "body": refusal.body})


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [bytes(value).decode("latin-1") for key, value in scope.get("headers", ()) if key.lower() == name]

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

**Not blocking the event loop.** By default (``offload=True``) the
middleware verifies with :meth:`~jwtwarden.Verifier.verify_full_async`: what
the engine decides without a signature check or a network wait (a cache
hit, about a microsecond; a malformed token, an unknown issuer, an unknown
``kid`` it remembers or may not fetch for yet) is answered inline on the
loop, with no thread hop; the rest (a signature check, tens of
microseconds, and a token with an unknown ``kid`` that may wait for one
JWKS fetch, up to ``http.timeout_ms``) runs in jwtwarden's own worker
threads, so the loop keeps serving meanwhile (see ``jwtwarden._aio`` for
why not the default executor). ``offload=False`` verifies everything
inline on the loop: it saves the thread hop of a miss but lets an unknown
``kid`` stall every connection of that loop for up to one fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from ._http import Refusal, Routes, bearer_token, refusal_for
from ._native import Verifier
from .exceptions import JwtWardenError

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
    :param offload: verify what may check a signature or fetch in a worker
        thread, the rest inline (default), or everything inline on the event loop.
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
        try:
            if self.offload:
                result = await self.verifier.verify_full_async(token, issuer=self.issuer, fresh=fresh)
            else:
                result = self.verifier.verify_full(token, issuer=self.issuer, fresh=fresh)
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

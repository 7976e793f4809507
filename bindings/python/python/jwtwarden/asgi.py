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
middleware verifies as :meth:`~jwtwarden.Verifier.verify_full_async` does: what
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

**One decision.** Every rule (token extraction, path normalisation, route
matching, the refusal, claim headers) is the core's HTTP decision
(``jwtwarden::http``, the same code as ``jwtwarden serve``), called
natively: on the loop it decides without waiting (a hit, a refusal, an open
route); only a decision that needs a signature check or may fetch is made
again, with waiting allowed, in the worker thread. Routes match the core's
normalised path (``/docs/../orders`` gets the rules of ``/orders``;
``/docs/..;/orders`` is refused with 403). The path handed to the core is
``scope["raw_path"]``, the path as the client sent it (only it shows an
encoded ``/`` or a double encoding), taken relative to ``root_path`` when
``scope["path"]`` is; without ``raw_path``, ``scope["path"]``
percent-encoded again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from . import _aio
from ._http import Mint, Options, split_minted, Refusal, decodes_to, quote_path, refusal
from ._assertion import DEFAULT_ASSERTION_HEADER, AssertionRoutes
from ._native import Inherited, Minter, VerifiedToken, Verifier

__all__ = ["ASGIMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def request_target(scope: Scope) -> str:
    """The path as the client sent it (see the module documentation)."""
    raw = scope.get("raw_path")
    path = scope.get("path", "")
    if raw:
        target = bytes(raw).decode("latin-1")
        root = scope.get("root_path", "")
        # Servers differ on whether ``path`` includes ``root_path``; the
        # raw path always does. Take it as relative as ``path`` is.
        relative = bool(root) and not path.startswith(root)
        # Only a raw path that decodes to what the application routes on:
        # not when a middleware before this one rewrote the path.
        if target.startswith("/") and decodes_to(target, root + path if relative else path, "utf-8"):
            if not relative:
                return target
            mount = quote_path(root, "utf-8")
            rest = target[len(mount) :]
            if target.startswith(mount) and rest[:1] in ("", "/"):
                return rest or "/"
    return quote_path(path, "utf-8")


def wire_target(scope: Scope) -> str:
    """The request target as this server received it, ``root_path``
    included: what the edge forwarded and bound its assertion to (routes are
    matched on :func:`request_target`, relative to the mount point)."""
    raw = scope.get("raw_path")
    if raw:
        target = bytes(raw).decode("latin-1")
        if target.startswith("/"):
            return target
    root, path = scope.get("root_path", ""), scope.get("path", "")
    return quote_path(path if path.startswith(root) else root + path, "utf-8")


class ASGIMiddleware:
    """Wraps an ASGI application; see the module documentation.

    :param app: the ASGI application to protect.
    :param verifier: the :class:`~jwtwarden.Verifier` to use.
    :param issuer: verify for this configured issuer only (default: by the token's ``iss``).
    :param realm: ``realm`` in the ``WWW-Authenticate`` challenge (default: none).
    :param skip_paths: routes left open (no token needed, no claims in the scope):
        exact paths (``"/openapi.json"``), or prefixes ending with ``*``
        (``"/docs/*"``), matched against the normalised path (see the module documentation).
    :param skip_if: a predicate on the scope; true leaves the connection open
        (not a path the core refuses: those get 403 whatever the predicate says).
    :param authenticate_options: also require a token on ``OPTIONS`` requests
        (default: ``OPTIONS``, i.e. CORS preflight, passes through).
    :param fresh: skip the cache and check the signature on every request.
    :param fresh_paths: skip the cache on these routes only (same patterns as ``skip_paths``).
    :param fresh_if: a predicate on the scope; true skips the cache for that request.
    :param offload: verify what may check a signature or fetch in a worker
        thread, the rest inline (default), or everything inline on the event loop.
    :param claim_headers: claim name to request header name (``{"sub": "X-Auth-Sub"}``):
        an allowed connection reaches the application with these headers set from the
        verified claims (values sanitised by the core); the same headers sent by
        the client are removed from every connection, open routes included.
    :param accept_assertion: routes (patterns as ``skip_paths``) on which an edge's
        verification assertion in ``assertion_header`` is accepted instead of a token:
        inherited trust, handed to the application as ``scope["jwtwarden.inherited"]``
        (see :mod:`jwtwarden._assertion`; default: none).
    :param assertion_header: the request header carrying the assertion
        (default ``X-Jwtwarden-Assertion``).
    :param minter: make this middleware the edge (docs/trust-handoff.md §2): an
        allowed request reaches the application with a verification assertion,
        minted by this :class:`~jwtwarden.Minter` for the upstream and bound to the
        request's method and path, in ``mint_header``; every copy of that header the
        client sent is removed first, on every request (open routes included), so
        an application that forwards the request (a proxy) never passes the
        client's on. Default: none.
    :param mint_audience: the upstream's audience on every protected route.
    :param mint_audiences: audiences by route prefix (``{"/api/billing": "billing"}``),
        winning over ``mint_audience``; a route with neither carries no assertion.
    :param mint_header: the header the minted assertion goes in
        (default ``X-Jwtwarden-Assertion``).
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
        claim_headers: Optional[Mapping[str, str]] = None,
        accept_assertion: Sequence[str] = (),
        assertion_header: str = DEFAULT_ASSERTION_HEADER,
        minter: Optional[Minter] = None,
        mint_audience: Optional[str] = None,
        mint_audiences: Optional[Mapping[str, str]] = None,
        mint_header: str = DEFAULT_ASSERTION_HEADER,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.issuer = issuer
        self.realm = realm
        self.options: Options[Scope] = Options(
            issuer=issuer,
            realm=realm,
            skip_paths=skip_paths,
            skip_if=skip_if,
            authenticate_options=authenticate_options,
            fresh=fresh,
            fresh_paths=fresh_paths,
            fresh_if=fresh_if,
            claim_headers=claim_headers,
            mint=None
            if minter is None
            else Mint(minter, mint_header, mint_audience, dict(mint_audiences or {})),
        )
        self.offload = offload
        self._claim_names = frozenset(n.encode("latin-1") for n in self.options.claim_header_names)
        self.assertions = AssertionRoutes(
            accept_assertion, assertion_header, fresh=fresh, fresh_paths=fresh_paths, realm=realm
        )
        self._assertion_name = assertion_header.lower().encode("latin-1")
        self._mint_name = None if minter is None else mint_header.lower().encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", ())
        if self._claim_names:
            headers = [(k, v) for k, v in headers if bytes(k).lower() not in self._claim_names]
            scope["headers"] = headers
        if self._mint_name is not None:
            headers = [(k, v) for k, v in headers if bytes(k).lower() != self._mint_name]
            scope["headers"] = headers
        authorization = [
            value if type(value) is bytes else bytes(value)
            for key, value in headers
            if key.lower() == b"authorization"
        ]
        method = scope.get("method", "GET") if scope["type"] == "http" else "GET"
        if self.assertions and await self._inherit(scope, receive, send, headers, method):
            return
        target = request_target(scope) if self.options.routes else None
        skip, fresh = self.options.predicates(scope)
        policy = self.options.policy
        decided = policy.decide(self.verifier, method, target, authorization, skip, fresh, not self.offload)
        if decided is None:
            # Only a signature check or a fetch can tell: the same decision,
            # with waiting allowed, in jwtwarden's worker threads.
            decided = await _aio._in_thread(
                lambda: policy.decide(self.verifier, method, target, authorization, skip, fresh, True)
            )
        decided, minted = split_minted(decided)
        if minted is not None and self._mint_name is not None:
            headers = [*headers, (self._mint_name, minted.encode("latin-1"))]
            scope["headers"] = headers
        if type(decided) is VerifiedToken:
            scope["jwtwarden.claims"] = decided.claims
            scope["jwtwarden"] = decided.claims
            scope["jwtwarden.result"] = decided
            if self._claim_names:
                scope["headers"] = [
                    *headers,
                    *((n.encode("latin-1"), v.encode()) for n, v in policy.claim_headers(decided)),
                ]
            await self.app(scope, receive, send)
            return
        if decided is True:
            await self.app(scope, receive, send)
            return
        assert isinstance(decided, tuple), decided
        await self._refuse(scope, send, refusal(decided))

    async def _inherit(self, scope: Scope, receive: Receive, send: Send, headers: Any, method: str) -> bool:
        """Decide on the assertion when the route accepts one and the request
        carries it (True: answered); False: decide on the token."""
        values = [bytes(v) for k, v in headers if bytes(k).lower() == self._assertion_name]
        if not values:
            return False
        route_fresh = self.assertions.route(request_target(scope))
        if route_fresh is None:
            return False
        target = wire_target(scope)
        fresh = route_fresh or self.options.predicates(scope)[1]
        assertion = b",".join(values).decode("latin-1")
        verifier, routes = self.verifier, self.assertions
        if self.offload:
            result = await _aio._in_thread(lambda: routes.verify(verifier, assertion, method, target, fresh))
        else:
            result = routes.verify(verifier, assertion, method, target, fresh)
        if isinstance(result, Inherited):
            scope["jwtwarden.inherited"] = result
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, send, result)
        return True

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

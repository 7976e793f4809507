"""WSGI middleware: require a valid bearer token, except on the routes you leave open.

::

    from jwtwarden.wsgi import WSGIMiddleware

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, verifier, skip_paths=["/healthz"])   # Flask
    # in a view: request.environ["jwtwarden.claims"]

On success the claims are in ``environ["jwtwarden.claims"]`` and the full
:class:`~jwtwarden.VerifiedToken` (``cached``, ``verified_at``, ...) in
``environ["jwtwarden.result"]``. On failure the application is not called and
the client gets the response of the HTTP contract (docs/http.md, the same in
every jwtwarden middleware): 401 with ``WWW-Authenticate: Bearer`` for a
missing or rejected token, 400 ``invalid_request`` for a malformed
``Authorization`` header, 403 for a path no reading of which is safe
(``/docs/..;/x``), 503 with ``Retry-After`` when the issuer's keys are
unavailable; a JSON body, ``Cache-Control: no-store``.

Every rule is the core's HTTP decision (``jwtwarden::http``, the same code
as ``jwtwarden serve``): this class only hands it the method, the request
target as the client sent it and the ``Authorization`` header, and writes
the answer back. Routes (``skip_paths``, ``fresh_paths``) are matched on
the core's normalised path: percent-decoded once, ``;parameters``
stripped, dot segments resolved, so ``/docs/../orders`` gets the rules of
``/orders``. The target is ``RAW_URI`` (gunicorn) or ``REQUEST_URI``
(uWSGI, mod_wsgi) when the server gives it, since only the raw form shows
an encoded ``/`` or a double encoding; else ``PATH_INFO`` percent-encoded
again. Either is taken relative to ``SCRIPT_NAME``, as ``PATH_INFO`` is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable, Optional

from ._assertion import DEFAULT_ASSERTION_HEADER, AssertionRoutes
from ._http import Mint, Options, split_minted, decodes_to, quote_path, refusal
from ._native import Inherited, Minter, VerifiedToken, Verifier

__all__ = ["WSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


def request_target(environ: Environ) -> str:
    """The request target as the client sent it, relative to ``SCRIPT_NAME``
    (see the module documentation)."""
    path_info = environ.get("PATH_INFO", "")
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        script = environ.get("SCRIPT_NAME", "")
        mount = quote_path(script, "latin-1") if script else ""
        # Only a raw target that decodes to what the application routes on
        # (SCRIPT_NAME + PATH_INFO): not when a middleware before this one
        # rewrote the path.
        if raw.startswith(mount) and decodes_to(raw, script + path_info, "latin-1"):
            rest = raw[len(mount) :]
            if rest[:1] in ("", "/", "?"):
                return rest if rest[:1] == "/" else "/" + rest
    return quote_path(path_info, "latin-1")


def wire_target(environ: Environ) -> str:
    """The request target as this server received it, ``SCRIPT_NAME``
    included: what the edge forwarded and bound its assertion to (routes are
    matched on :func:`request_target`, relative to the mount point)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if isinstance(raw, str) and raw.startswith("/"):
        return raw
    return quote_path(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), "latin-1")


class WSGIMiddleware:
    """Wraps a WSGI application; see the module documentation.

    :param app: the WSGI application to protect.
    :param verifier: the :class:`~jwtwarden.Verifier` to use (shared by all requests and threads).
    :param issuer: verify for this configured issuer only (default: by the token's ``iss``).
    :param realm: ``realm`` in the ``WWW-Authenticate`` challenge (default: none).
    :param skip_paths: routes left open (no token needed, no claims in the environ):
        exact paths (``"/healthz"``), or prefixes ending with ``*`` (``"/static/*"``),
        matched against the normalised path (see the module documentation).
    :param skip_if: a predicate on the environ; true leaves the request open
        (not a path the core refuses: those get 403 whatever the predicate says).
    :param authenticate_options: also require a token on ``OPTIONS`` requests
        (default: ``OPTIONS``, i.e. CORS preflight, passes through).
    :param fresh: skip the cache and check the signature on every request.
    :param fresh_paths: skip the cache on these routes only (same patterns as ``skip_paths``).
    :param fresh_if: a predicate on the environ; true skips the cache for that request.
    :param claim_headers: claim name to request header name (``{"sub": "X-Auth-Sub"}``):
        an allowed request reaches the application with these headers set from the
        verified claims (values sanitised by the core); the same headers sent by
        the client are removed from every request, open routes included.
    :param accept_assertion: routes (patterns as ``skip_paths``) on which an edge's
        verification assertion in ``assertion_header`` is accepted instead of a token:
        inherited trust, handed to the application as ``environ["jwtwarden.inherited"]``
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
        app: WSGIApp,
        verifier: Verifier,
        *,
        issuer: Optional[str] = None,
        realm: Optional[str] = None,
        skip_paths: Sequence[str] = (),
        skip_if: Optional[Callable[[Environ], bool]] = None,
        authenticate_options: bool = False,
        fresh: bool = False,
        fresh_paths: Sequence[str] = (),
        fresh_if: Optional[Callable[[Environ], bool]] = None,
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
        self.options: Options[Environ] = Options(
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
        self._claim_keys = tuple("HTTP_" + n.upper().replace("-", "_") for n in self.options.claim_header_names)
        self.assertions = AssertionRoutes(
            accept_assertion, assertion_header, fresh=fresh, fresh_paths=fresh_paths, realm=realm
        )
        self._assertion_key = "HTTP_" + assertion_header.upper().replace("-", "_")
        self._mint_key = None if minter is None else "HTTP_" + mint_header.upper().replace("-", "_")

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        for key in self._claim_keys:
            environ.pop(key, None)
        if self._mint_key is not None:
            environ.pop(self._mint_key, None)
        assertion = environ.get(self._assertion_key) if self.assertions else None
        if assertion is not None:
            route_fresh = self.assertions.route(request_target(environ))
            if route_fresh is not None:
                fresh = route_fresh or self.options.predicates(environ)[1]
                method = environ.get("REQUEST_METHOD", "GET")
                wire = wire_target(environ)
                inherited = self.assertions.verify(self.verifier, assertion, method, wire, fresh)
                if isinstance(inherited, Inherited):
                    environ["jwtwarden.inherited"] = inherited
                    return self.app(environ, start_response)
                start_response(inherited.status_line, inherited.headers)
                return [inherited.body]
        header = environ.get("HTTP_AUTHORIZATION")
        decided = self.options.decide(
            self.verifier,
            environ.get("REQUEST_METHOD", "GET"),
            request_target(environ) if self.options.routes else None,
            () if header is None else (header,),
            environ,
        )
        decided, minted = split_minted(decided)
        if minted is not None and self._mint_key is not None:
            environ[self._mint_key] = minted
        if type(decided) is VerifiedToken:
            environ["jwtwarden.claims"] = decided.claims
            environ["jwtwarden.result"] = decided
            if self._claim_keys:
                for name, value in self.options.policy.claim_headers(decided):
                    # PEP 3333: header values are bytes as latin-1 text.
                    environ["HTTP_" + name.upper().replace("-", "_")] = value.encode().decode("latin-1")
            return self.app(environ, start_response)
        if decided is True:
            return self.app(environ, start_response)
        assert isinstance(decided, tuple), decided
        refused = refusal(decided)
        start_response(refused.status_line, refused.headers)
        return [refused.body]

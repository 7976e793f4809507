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
``Authorization`` header, 503 with ``Retry-After`` when the issuer's keys are
unavailable; a JSON body, ``Cache-Control: no-store``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Iterable, Optional

from ._http import Refusal, Routes, bearer_token, refusal_for
from ._native import Verifier
from .exceptions import JwtWardenError

__all__ = ["WSGIMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class WSGIMiddleware:
    """Wraps a WSGI application; see the module documentation.

    :param app: the WSGI application to protect.
    :param verifier: the :class:`~jwtwarden.Verifier` to use (shared by all requests and threads).
    :param issuer: verify for this configured issuer only (default: by the token's ``iss``).
    :param realm: ``realm`` in the ``WWW-Authenticate`` challenge (default: none).
    :param skip_paths: routes left open (no token needed, no claims in the environ):
        exact paths (``"/healthz"``), or prefixes ending with ``*`` (``"/static/*"``),
        matched against ``PATH_INFO``.
    :param skip_if: a predicate on the environ; true leaves the request open.
    :param authenticate_options: also require a token on ``OPTIONS`` requests
        (default: ``OPTIONS``, i.e. CORS preflight, passes through).
    :param fresh: skip the cache and check the signature on every request.
    :param fresh_paths: skip the cache on these routes only (same patterns as ``skip_paths``).
    :param fresh_if: a predicate on the environ; true skips the cache for that request.
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
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.issuer = issuer
        self.realm = realm
        self.routes: Routes[Environ] = Routes(
            skip_paths=skip_paths,
            skip_if=skip_if,
            authenticate_options=authenticate_options,
            fresh=fresh,
            fresh_paths=fresh_paths,
            fresh_if=fresh_if,
        )

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if self.routes.open(environ.get("REQUEST_METHOD", "GET"), path, environ):
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION")
        token = bearer_token([] if header is None else [header], self.realm)
        if isinstance(token, Refusal):
            return self._refuse(token, start_response)
        fresh = self.routes.wants_fresh(path, environ)
        try:
            result = self.verifier.verify_full(token, issuer=self.issuer, fresh=fresh)
        except JwtWardenError as e:
            return self._refuse(refusal_for(e, self.realm), start_response)
        environ["jwtwarden.claims"] = result.claims
        environ["jwtwarden.result"] = result
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(refusal: Refusal, start_response: StartResponse) -> Iterable[bytes]:
        start_response(refusal.status_line, refusal.headers)
        return [refusal.body]

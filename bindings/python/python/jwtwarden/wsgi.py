"""WSGI middleware: require a valid bearer token on every request.

::

    from jwtwarden.wsgi import WSGIMiddleware

    app.wsgi_app = WSGIMiddleware(app.wsgi_app, verifier)   # Flask
    # in a view: request.environ["jwtwarden.claims"]

On success the claims are in ``environ["jwtwarden.claims"]`` and the full
:class:`~jwtwarden.VerifiedToken` (``cached``, ``verified_at``, ...) in
``environ["jwtwarden.result"]``. On failure the application is not called:
see :func:`jwtwarden._http.refusal_for` for the responses (401 JSON with
``WWW-Authenticate: Bearer error="invalid_token"``; 503 when the issuer's keys
are unavailable).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from ._http import Refusal, bearer_token, refusal_for
from ._native import Verifier
from .exceptions import JwtWardenError

__all__ = ["WSGIMiddleware"]

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class WSGIMiddleware:
    """Wraps a WSGI application; see the module documentation.

    :param app: the WSGI application to protect.
    :param verifier: the :class:`~jwtwarden.Verifier` to use (shared by all requests and threads).
    :param issuer: verify for this configured issuer only (default: by the token's ``iss``).
    :param fresh: skip the cache and check the signature on every request.
    :param realm: ``realm`` in the ``WWW-Authenticate`` challenge.
    """

    def __init__(
        self,
        app: WSGIApp,
        verifier: Verifier,
        *,
        issuer: Optional[str] = None,
        fresh: bool = False,
        realm: Optional[str] = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.issuer = issuer
        self.fresh = fresh
        self.realm = realm

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"), self.realm)
        if isinstance(token, Refusal):
            return self._refuse(token, start_response)
        try:
            result = self.verifier.verify_full(token, issuer=self.issuer, fresh=self.fresh)
        except JwtWardenError as e:
            return self._refuse(refusal_for(e, self.realm), start_response)
        environ["jwtwarden.claims"] = result.claims
        environ["jwtwarden.result"] = result
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(refusal: Refusal, start_response: StartResponse) -> Iterable[bytes]:
        start_response(refusal.status_line, refusal.headers)
        return [refusal.body]

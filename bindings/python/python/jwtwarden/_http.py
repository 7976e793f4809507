"""What the WSGI and ASGI middleware share: reading the bearer token and
turning a refusal into an HTTP response (RFC 6750)."""

from __future__ import annotations

import json
import logging
from typing import NamedTuple, Optional, Union

from .exceptions import JwtWardenError, KeysUnavailableError, UsageError, InternalError

_log = logging.getLogger("jwtwarden.http")

_REASONS = {400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error", 503: "Service Unavailable"}


class Refusal(NamedTuple):
    """An HTTP response refusing the request."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {_REASONS[self.status]}"


def _challenge(realm: Optional[str], error: Optional[str] = None, description: Optional[str] = None) -> str:
    params = []
    if realm is not None:
        params.append(f'realm="{_quote(realm)}"')
    if error is not None:
        params.append(f'error="{error}"')
    if description is not None:
        params.append(f'error_description="{_quote(description)}"')
    return "Bearer" + (" " + ", ".join(params) if params else "")


def _quote(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _refusal(status: int, body: dict[str, object], challenge: Optional[str]) -> Refusal:
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")]
    if challenge is not None:
        headers.append(("WWW-Authenticate", challenge))
    return Refusal(status, headers, data)


def bearer_token(authorization: Optional[str], realm: Optional[str]) -> Union[str, Refusal]:
    """The token of an ``Authorization: Bearer <token>`` header, or the refusal.

    No header, or another scheme: 401 with a bare ``Bearer`` challenge (RFC 6750
    section 3.1: no error code when no credentials were given). ``Bearer`` with
    no token or with spaces in it: 400 ``invalid_request``.
    """
    if authorization is None:
        return _refusal(401, {"error": "missing_token"}, _challenge(realm))
    scheme, _, rest = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return _refusal(401, {"error": "missing_token"}, _challenge(realm))
    token = rest.strip()
    if not token or " " in token:
        return _refusal(
            400,
            {"error": "invalid_request", "error_description": "malformed Authorization header"},
            _challenge(realm, "invalid_request", "malformed Authorization header"),
        )
    return token


def refusal_for(error: JwtWardenError, realm: Optional[str]) -> Refusal:
    """The response for a token jwtwarden refused.

    * malformed, verification and policy errors: 401 ``invalid_token`` (the
      description is the stable kind, e.g. ``expired``; never the token);
    * keys unavailable (the identity provider's keys cannot be trusted right
      now; the token may be fine): 503 with ``Retry-After``, so clients do
      not throw away good tokens during an outage;
    * usage and internal errors: 500, logged.
    """
    if isinstance(error, KeysUnavailableError):
        _log.warning("refusing request: %s", error)
        refusal = _refusal(503, {"error": "temporarily_unavailable", "code": error.code}, None)
        refusal.headers.append(("Retry-After", "5"))
        return refusal
    if isinstance(error, (UsageError, InternalError)):
        _log.error("verification failed on the server side: %s", error)
        return _refusal(500, {"error": "server_error", "code": error.code}, None)
    kind = error.kind or "invalid_token"
    return _refusal(
        401,
        {"error": "invalid_token", "error_description": kind, "code": error.code},
        _challenge(realm, "invalid_token", kind),
    )

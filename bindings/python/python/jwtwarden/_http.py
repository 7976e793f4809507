"""What the WSGI and ASGI middleware share: the HTTP contract of docs/http.md.

Reading the bearer token (RFC 6750 section 2.1), turning a refusal into a
response (RFC 6750 section 3), and the route options (open routes, ``OPTIONS``,
``fresh`` routes). The Go middleware implements the same contract; both are
tested against one table, ``tests/http_contract.json`` at the repository root.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Callable, Generic, NamedTuple, Optional, TypeVar, Union

from .exceptions import JwtWardenError

_log = logging.getLogger("jwtwarden.http")

_REASONS = {400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error", 503: "Service Unavailable"}

#: The response status for an engine error, by its category. The same table
#: is in the Go middleware and in tests/http_contract.json.
STATUS_BY_CATEGORY: dict[str, int] = {
    "malformed": 401,
    "verification": 401,
    "policy": 401,
    "keys_unavailable": 503,
    "usage": 500,
    "internal": 500,
}

#: ``Retry-After`` (seconds) on a 503.
RETRY_AFTER = "5"

# Fixed messages where the engine's message could reveal server internals
# (a JWKS URL, a network error); the details are logged instead.
_SERVER_MESSAGES = {
    503: "the token issuer's keys are unavailable; retry later",
    500: "token verification failed on the server",
}
_MISSING_MESSAGE = "a bearer token is required"
_SPACES = re.compile(r"[ \t]+")


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


def _refusal(
    status: int, error: str, code: Optional[int], category: str, message: str, challenge: Optional[str]
) -> Refusal:
    body = {"error": error, "code": code, "category": category, "message": message}
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")]
    if challenge is not None:
        headers.append(("WWW-Authenticate", challenge))
    if status == 503:
        headers.append(("Retry-After", RETRY_AFTER))
    return Refusal(status, headers, data)


def _invalid_request(realm: Optional[str], message: str) -> Refusal:
    return _refusal(400, "invalid_request", None, "request", message, _challenge(realm, "invalid_request", message))


def bearer_token(authorization: Sequence[str], realm: Optional[str]) -> Union[str, Refusal]:
    """The token of the request's ``Authorization: Bearer <token>`` header, or the refusal.

    ``authorization`` is every ``Authorization`` header of the request.

    * none, or another scheme (``Basic ...``): 401 with a bare ``Bearer``
      challenge (RFC 6750 section 3.1: no error code when the request has no
      bearer credentials);
    * more than one header, ``Bearer`` with no token, or with more than one
      (whitespace inside): 400 ``invalid_request`` (section 3.1: malformed).
    """
    if len(authorization) == 0:
        return _refusal(401, "missing_token", None, "request", _MISSING_MESSAGE, _challenge(realm))
    if len(authorization) > 1:
        return _invalid_request(realm, "more than one Authorization header")
    parts = [part for part in _SPACES.split(authorization[0]) if part]
    if not parts or parts[0].lower() != "bearer":
        return _refusal(401, "missing_token", None, "request", _MISSING_MESSAGE, _challenge(realm))
    if len(parts) == 1:
        return _invalid_request(realm, "no token after Bearer")
    if len(parts) > 2:
        return _invalid_request(realm, "more than one token after Bearer")
    return parts[1]


def refusal_for(error: JwtWardenError, realm: Optional[str]) -> Refusal:
    """The response for a token jwtwarden refused (status by category: :data:`STATUS_BY_CATEGORY`).

    * malformed, verification and policy errors: 401 with
      ``error="invalid_token"`` and the stable kind as ``error_description``;
    * keys unavailable (the token may be fine): 503 with ``Retry-After``, so
      clients retry instead of throwing away good tokens during an outage;
    * usage and internal errors: 500, logged.
    """
    category = error.category or "internal"
    kind = error.kind or "internal"
    status = STATUS_BY_CATEGORY.get(category, 500)
    if status == 401:
        challenge = _challenge(realm, "invalid_token", kind)
        return _refusal(401, kind, error.code, category, error.message, challenge)
    if status == 503:
        _log.warning("refusing request: %s", error)
    else:
        _log.error("verification failed on the server side: %s", error)
    return _refusal(status, kind, error.code, category, _SERVER_MESSAGES[status], None)


R = TypeVar("R")


def _patterns(name: str, paths: Sequence[str]) -> tuple[str, ...]:
    if isinstance(paths, str):
        raise TypeError(f"{name} must be a list of paths, not a str")
    return tuple(paths)


def path_matches(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` is one of ``patterns``: exact, or a prefix when the pattern ends with ``*``."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if path.startswith(pattern[:-1]):
                return True
        elif path == pattern:
            return True
    return False


class Routes(Generic[R]):
    """The route options, with the framework's request object ``R`` (environ or scope)."""

    def __init__(
        self,
        *,
        skip_paths: Sequence[str],
        skip_if: Optional[Callable[[R], bool]],
        authenticate_options: bool,
        fresh: bool,
        fresh_paths: Sequence[str],
        fresh_if: Optional[Callable[[R], bool]],
    ) -> None:
        self.skip_paths = _patterns("skip_paths", skip_paths)
        self.skip_if = skip_if
        self.authenticate_options = authenticate_options
        self.fresh = fresh
        self.fresh_paths = _patterns("fresh_paths", fresh_paths)
        self.fresh_if = fresh_if

    def open(self, method: str, path: str, request: R) -> bool:
        """Whether the request passes to the application without a token."""
        if method == "OPTIONS" and not self.authenticate_options:
            return True
        if path_matches(path, self.skip_paths):
            return True
        return self.skip_if is not None and self.skip_if(request)

    def wants_fresh(self, path: str, request: R) -> bool:
        """Whether to skip the cache for this request."""
        if self.fresh or path_matches(path, self.fresh_paths):
            return True
        return self.fresh_if is not None and self.fresh_if(request)

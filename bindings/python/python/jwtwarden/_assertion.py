"""Inherited trust in the middlewares: routes on which an edge's
verification assertion is accepted instead of the client's token
(docs/trust-handoff.md, "Behind the edge").

On a route listed in ``accept_assertion`` a request that carries the
assertion header is decided on the assertion alone: it is verified with
:meth:`jwtwarden.Verifier.verify_assertion`, bound to the request's method
and path, and the result (an :class:`~jwtwarden.Inherited`) is handed to
the application as ``jwtwarden.inherited`` (``jwtwarden.claims`` and
``jwtwarden.result`` are not set: no token was verified here). Without the
header such a route takes a bearer token as usual. On every other route
the header is ignored: a bearer token is required, and an assertion sent
as one is refused (401, ``unknown_issuer``). A route that is fresh
(``fresh``, ``fresh_paths``, ``fresh_if``) takes an assertion only within
the edge's ``fresh_within_secs``.

Routes are matched against the request path percent-decoded and cleaned
(dot segments resolved); the assertion itself is bound to the path the
engine normalises, so a path spelt differently cannot carry it elsewhere.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Sequence
from typing import Optional, Union
from urllib.parse import unquote

from ._http import RETRY_AFTER, STATUS_BY_CATEGORY, Refusal
from ._native import Inherited, Verifier
from .exceptions import JwtWardenError

__all__ = ["DEFAULT_ASSERTION_HEADER", "AssertionRoutes"]

#: The request header an edge puts its assertion in unless configured otherwise.
DEFAULT_ASSERTION_HEADER = "X-Jwtwarden-Assertion"


def _matches(pattern: str, path: str, fold: bool) -> bool:
    if fold:
        pattern, path = pattern.lower(), path.lower()
    if not pattern.endswith("*"):
        return pattern == path
    prefix = pattern[:-1]
    if prefix in ("", "/"):
        return True
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def clean_path(target: str) -> str:
    """The path routes are matched against: decoded, dot segments resolved."""
    path = unquote(target.partition("?")[0]) or "/"
    cleaned = posixpath.normpath("/" + path.lstrip("/"))
    return cleaned


class AssertionRoutes:
    """The routes that accept assertions, and how to answer one."""

    def __init__(
        self,
        paths: Sequence[str],
        header: str,
        *,
        fresh: bool,
        fresh_paths: Sequence[str],
        realm: Optional[str],
    ) -> None:
        if isinstance(paths, str):
            raise TypeError("accept_assertion must be a list of paths, not a str")
        for p in paths:
            if not p.startswith("/"):
                raise ValueError(f"accept_assertion: {p!r} is not an absolute path")
        self.paths = tuple(paths)
        self.header = header
        self.fresh = fresh
        self.fresh_paths = tuple(fresh_paths)
        self.realm = realm

    def __bool__(self) -> bool:
        return bool(self.paths)

    def route(self, target: str) -> Optional[bool]:
        """``None`` when the route does not accept assertions; else whether it is fresh
        (by ``fresh`` and ``fresh_paths``; the caller adds ``fresh_if``)."""
        path = clean_path(target)
        if not any(_matches(p, path, False) for p in self.paths):
            return None
        return self.fresh or any(_matches(p, path, True) for p in self.fresh_paths)

    def verify(
        self, verifier: Verifier, assertion: str, method: str, target: str, fresh: bool
    ) -> Union[Inherited, Refusal]:
        """The assertion verified, or the refusal of the HTTP contract."""
        try:
            return verifier.verify_assertion(assertion, method=method, path=target, fresh=fresh)
        except JwtWardenError as e:
            return self.refusal(e)

    def refusal(self, e: JwtWardenError) -> Refusal:
        category = e.category or "internal"
        status = STATUS_BY_CATEGORY.get(category, 500)
        body = json.dumps(
            {"error": e.kind, "code": e.code, "category": category, "message": "verification assertion refused"},
            separators=(",", ":"),
        ).encode()
        headers = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        if status == 401:
            realm = f'realm="{self.realm}", ' if self.realm is not None else ""
            headers.append(("WWW-Authenticate", f'Bearer {realm}error="invalid_token", error_description="{e.kind}"'))
        elif status == 503:
            headers.append(("Retry-After", RETRY_AFTER))
        return Refusal(status, headers, body)

"""What the WSGI and ASGI middleware share: their options as the core's HTTP
decision (``jwtwarden::http``, docs/http.md), and the refusal as a response.

The decision itself (token extraction, path normalisation, route rules,
the refusal's status, ``WWW-Authenticate``, ``Retry-After``, body and
``Cache-Control``, claim headers) is the core's, run natively by
:class:`jwtwarden._native.HttpPolicy`: the same code as ``jwtwarden serve``,
the C ABI's decision and the web-server modules. The middlewares only turn
the environ or scope into a method, a raw request target and header values,
and write the answer back. All of them are tested against one table,
``tests/http_contract.json`` at the repository root.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Generic, NamedTuple, Optional, TypeVar, Union
from urllib.parse import quote, unquote

from ._native import HttpPolicy, Minter, VerifiedToken, Verifier

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

#: The response status for an engine error, by its category: the core's
#: table (``core/src/http/refusal.rs``), listed here for reference; the
#: same in every front end and in tests/http_contract.json.
STATUS_BY_CATEGORY: dict[str, int] = {
    "malformed": 401,
    "verification": 401,
    "policy": 401,
    "keys_unavailable": 503,
    "usage": 500,
    "internal": 500,
}

#: ``Retry-After`` (seconds) on a 503 (the core's default).
RETRY_AFTER = "5"

# The characters a re-quoted path keeps as they are: the path characters
# of RFC 3986 (``;`` included: the core strips ``;parameters`` whether they
# came as ``;`` or ``%3B``). Everything else, ``%`` included, is escaped,
# so the core decodes exactly once what the server decoded once.
_PATH_SAFE = "/;-._~!$&'()*+,=:@"


class Refusal(NamedTuple):
    """An HTTP response refusing the request (built by the core)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_line(self) -> str:
        return f"{self.status} {_REASONS.get(self.status, 'Error')}"


def refusal(decided: tuple[int, list[tuple[str, str]], bytes]) -> Refusal:
    """The core's refusal with ``Content-Type`` and ``Content-Length`` added."""
    status, headers, body = decided
    return Refusal(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *headers],
        body,
    )


def quote_path(path: str, encoding: str) -> str:
    """A decoded path (WSGI ``PATH_INFO``: bytes as ``latin-1``; ASGI
    ``path``: ``utf-8`` text) percent-encoded again, for a server that does
    not give the raw one."""
    if not path:
        return "/"
    return quote(path, safe=_PATH_SAFE, encoding=encoding)


def decodes_to(raw: str, path: str, encoding: str) -> bool:
    """Whether the raw target ``raw`` (query dropped) percent-decodes to ``path``."""
    return unquote(raw.partition("?")[0], encoding=encoding, errors="surrogateescape") == path


R = TypeVar("R")


def _patterns(name: str, paths: Sequence[str]) -> tuple[str, ...]:
    if isinstance(paths, str):
        raise TypeError(f"{name} must be a list of paths, not a str")
    return tuple(paths)


def _route(pattern: str, **rules: Any) -> dict[str, Any]:
    """A ``skip_paths``/``fresh_paths`` pattern as a core route: an exact
    path, or, ending with ``*``, everything below the prefix (``/docs/*``:
    prefix ``/docs/``; ``/docs*``: ``/docs`` and below, at a ``/``)."""
    if pattern.endswith("*"):
        prefix = pattern[:-1] or "/"
        return {"prefix": prefix, **rules}
    return {"prefix": pattern, "exact": True, **rules}


def policy_json(
    *,
    realm: Optional[str],
    skip_paths: Sequence[str],
    authenticate_options: bool,
    fresh_paths: Sequence[str],
    claim_headers: Mapping[str, str],
    assertion: Optional[Mapping[str, Any]] = None,
) -> str:
    """The middleware options as the core's policy JSON (docs/http.md)."""
    routes = [_route(p, open=True) for p in skip_paths]
    routes += [_route(p, fresh=True) for p in fresh_paths]
    policy: dict[str, Any] = {
        "routes": routes,
        "open_methods": [] if authenticate_options else ["OPTIONS"],
        "claim_headers": dict(claim_headers),
    }
    if realm is not None:
        policy["realm"] = realm
    if assertion is not None:
        policy["assertion"] = dict(assertion)
    return json.dumps(policy)


Decided = Union[
    bool, VerifiedToken, tuple[VerifiedToken, str], tuple[int, list[tuple[str, str]], bytes], None
]


#: A decision with any assertion taken out (:func:`split_minted`).
Settled = Union[bool, VerifiedToken, tuple[int, list[tuple[str, str]], bytes], None]


def split_minted(decided: Decided) -> tuple[Settled, Optional[str]]:
    """An allowed decision that minted, ``(VerifiedToken, assertion)``, as
    its result and the assertion; any other decision as it is, and ``None``."""
    if isinstance(decided, tuple) and len(decided) == 2:
        return decided[0], decided[1]
    return decided, None


class Mint(NamedTuple):
    """A middleware as the edge (``minter=``): what it mints, and where."""

    minter: Minter
    header: str
    audience: Optional[str]
    audiences: Mapping[str, str]

    def policy_section(self) -> dict[str, Any]:
        """The policy's ``assertion`` section (docs/trust-handoff.md §2)."""
        section: dict[str, Any] = {"header": self.header, "audiences": dict(self.audiences)}
        if self.audience is not None:
            section["audience"] = self.audience
        return section


class Options(Generic[R]):
    """The middleware options, with the framework's request object ``R``
    (environ or scope), over the core's decision."""

    def __init__(
        self,
        *,
        issuer: Optional[str],
        realm: Optional[str],
        skip_paths: Sequence[str],
        skip_if: Optional[Callable[[R], bool]],
        authenticate_options: bool,
        fresh: bool,
        fresh_paths: Sequence[str],
        fresh_if: Optional[Callable[[R], bool]],
        claim_headers: Optional[Mapping[str, str]],
        mint: Optional[Mint] = None,
    ) -> None:
        self.skip_paths = _patterns("skip_paths", skip_paths)
        self.fresh_paths = _patterns("fresh_paths", fresh_paths)
        self.skip_if = skip_if
        self.fresh_if = fresh_if
        self.claim_headers: Mapping[str, str] = dict(claim_headers or {})
        self.policy = HttpPolicy(
            policy_json(
                realm=realm,
                skip_paths=self.skip_paths,
                authenticate_options=authenticate_options,
                fresh_paths=self.fresh_paths,
                claim_headers=self.claim_headers,
                assertion=None if mint is None else mint.policy_section(),
            ),
            issuer=issuer,
            fresh=fresh,
            minter=None if mint is None else mint.minter,
        )
        #: Whether the decision reads the request target at all (routes do,
        #: and an assertion is bound to it: otherwise the path is not worked
        #: out per request).
        self.routes = bool(self.skip_paths or self.fresh_paths or mint is not None)
        #: Lower-case names of the claim headers (removed from every request).
        self.claim_header_names: frozenset[str] = frozenset(self.policy.claim_header_names)

    def predicates(self, request: R) -> tuple[bool, bool]:
        """``skip_if`` and ``fresh_if`` of a request (false when not set)."""
        skip = self.skip_if is not None and bool(self.skip_if(request))
        fresh = self.fresh_if is not None and bool(self.fresh_if(request))
        return skip, fresh

    def decide(
        self,
        verifier: Verifier,
        method: str,
        target: Optional[str],
        authorization: Sequence[Union[str, bytes]],
        request: R,
        wait: bool = True,
    ) -> Decided:
        """The core's decision (see :meth:`jwtwarden._native.HttpPolicy.decide`)."""
        skip, fresh = self.predicates(request)
        return self.policy.decide(verifier, method, target, authorization, skip, fresh, wait)

"""What an attacker tries against the middlewares' open routes and claim
headers: every spelling of a path gets the rules the core's decision gives
it (the same normaliser as ``jwtwarden serve``), whatever the server puts in
the environ or scope."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, MutableMapping
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults

import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden.asgi import ASGIMiddleware
from jwtwarden.wsgi import WSGIMiddleware

OPEN: dict[str, Any] = {"skip_paths": ["/healthz", "/docs/*"], "realm": "api"}


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = {
        "sub": environ["jwtwarden.claims"]["sub"] if "jwtwarden.claims" in environ else None,
        "x_auth_sub": environ.get("HTTP_X_AUTH_SUB"),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


def wsgi(app: WSGIMiddleware, environ: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    setup_testing_defaults(environ)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split()[0])
        seen["headers"] = {k.lower(): v for k, v in headers}

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], json.loads(body)


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    claims = scope.get("jwtwarden.claims")
    sub = [v.decode() for k, v in scope["headers"] if k == b"x-auth-sub"]
    body = {"sub": claims["sub"] if claims else None, "x_auth_sub": sub}
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def asgi(app: ASGIMiddleware, **scope: Any) -> tuple[int, dict[bytes, bytes], Any]:
    full = {"type": "http", "asgi": {"version": "3.0"}, "method": "GET", "headers": [], **scope}
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def record(m: MutableMapping[str, Any]) -> None:
        sent.append(m)

    asyncio.run(app(full, receive, record))
    start, body = sent
    return start["status"], dict(start["headers"]), json.loads(body["body"])


# (raw target as the client sent it, PATH_INFO as a server decodes it, status with no token)
SPELLINGS = [
    ("/healthz", "/healthz", 200),
    ("/docs/x", "/docs/x", 200),
    ("/docs/../orders", "/docs/../orders", 401),
    ("/docs/%2e%2e/orders", "/docs/../orders", 401),
    ("/docs/./../orders", "/docs/./../orders", 401),
    ("/docs//../orders", "/docs//../orders", 401),
    ("/docs/..;/orders", "/docs/..;/orders", 403),
    ("/docs/..%3b/orders", "/docs/..;/orders", 403),
    ("/docs%2F..%2Forders", "/docs/../orders", 403),
    ("/docs/%252e%252e/orders", "/docs/%2e%2e/orders", 403),
    ("/docs/..%5Corders", "/docs/..\\orders", 403),
    ("/DOCS/x", "/DOCS/x", 401),
    ("/healthz/x", "/healthz/x", 401),
    ("/healthz;x", "/healthz;x", 401),
    ("/healthz/.", "/healthz/.", 401),
    ("/docs./x", "/docs./x", 403),
    ("/../docs/x", "/../docs/x", 403),
]


@pytest.mark.parametrize("raw,path_info,status", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_wsgi_spellings_of_an_open_path(verifier: jwtwarden.Verifier, raw: str, path_info: str, status: int) -> None:
    app = WSGIMiddleware(wsgi_app, verifier, **OPEN)
    # gunicorn (RAW_URI), uWSGI (REQUEST_URI), and a server that gives neither
    # (PATH_INFO, encoded again: an encoded slash is lost there, the rest is seen).
    for environ in (
        {"RAW_URI": raw, "PATH_INFO": path_info},
        {"REQUEST_URI": raw + "?q=1", "PATH_INFO": path_info},
    ):
        assert wsgi(app, environ)[0] == status, environ
    got = wsgi(app, {"PATH_INFO": path_info})[0]
    if got != status:
        assert got != 200 and "%2F" in raw, path_info  # an encoded slash is lost in the decoding


@pytest.mark.parametrize("raw,path_info,status", SPELLINGS, ids=[s[0] for s in SPELLINGS])
def test_asgi_spellings_of_an_open_path(verifier: jwtwarden.Verifier, raw: str, path_info: str, status: int) -> None:
    app = ASGIMiddleware(asgi_app, verifier, **OPEN)
    assert asgi(app, path=path_info, raw_path=raw.encode())[0] == status
    got = asgi(app, path=path_info)[0]
    if got != status:
        assert got != 200 and "%2F" in raw, path_info  # an encoded slash is lost in the decoding


def test_an_unsafe_path_is_refused_even_with_a_token_and_a_skip_predicate(
    issuer: Issuer, verifier: jwtwarden.Verifier
) -> None:
    token = issuer.mint(sub="alice")
    for skip_if in (None, lambda _: True):
        w = WSGIMiddleware(wsgi_app, verifier, skip_paths=["/docs/*"], skip_if=skip_if)
        a = ASGIMiddleware(asgi_app, verifier, skip_paths=["/docs/*"], skip_if=skip_if)
        environ = {"RAW_URI": "/docs/..;/orders", "PATH_INFO": "/docs/..;/orders"}
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        status, headers, body = wsgi(w, environ)
        assert (status, body["error"]) == (403, "invalid_request")
        assert "www-authenticate" not in headers and headers["cache-control"] == "no-store"
        auth = [(b"authorization", f"Bearer {token}".encode())]
        assert asgi(a, path="/docs/..;/orders", raw_path=b"/docs/..;/orders", headers=auth)[0] == 403
    # A predicate still opens what the core accepts.
    w = WSGIMiddleware(wsgi_app, verifier, skip_paths=["/docs/*"], skip_if=lambda e: True)
    assert wsgi(w, {"PATH_INFO": "/orders"})[0] == 200


def test_a_prefix_pattern_without_a_slash_stops_at_a_segment(verifier: jwtwarden.Verifier) -> None:
    # "/docs*" used to open "/docsecret" too; the core's prefixes end at a "/".
    app = WSGIMiddleware(wsgi_app, verifier, skip_paths=["/docs*"])
    assert wsgi(app, {"PATH_INFO": "/docs"})[0] == 200
    assert wsgi(app, {"PATH_INFO": "/docs/x"})[0] == 200
    assert wsgi(app, {"PATH_INFO": "/docsecret"})[0] == 401


def test_script_name_and_root_path(verifier: jwtwarden.Verifier) -> None:
    app = WSGIMiddleware(wsgi_app, verifier, skip_paths=["/healthz"])
    mounted = {"SCRIPT_NAME": "/api", "RAW_URI": "/api/healthz", "PATH_INFO": "/healthz"}
    assert wsgi(app, mounted)[0] == 200
    sneaky = {"SCRIPT_NAME": "/api", "RAW_URI": "/api/healthz/../orders", "PATH_INFO": "/healthz/../orders"}
    assert wsgi(app, sneaky)[0] == 401
    a = ASGIMiddleware(asgi_app, verifier, skip_paths=["/healthz"])
    assert asgi(a, root_path="/api", path="/healthz", raw_path=b"/api/healthz")[0] == 200
    assert asgi(a, root_path="/api", path="/api/healthz", raw_path=b"/api/healthz")[0] == 401
    assert asgi(a, root_path="/api", path="/healthz/../x", raw_path=b"/api/healthz/../x")[0] == 401


def test_claim_headers_are_the_cores_and_cannot_be_spoofed(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    opts: dict[str, Any] = {"skip_paths": ["/healthz"], "claim_headers": {"sub": "X-Auth-Sub"}}
    w = WSGIMiddleware(wsgi_app, verifier, **opts)
    a = ASGIMiddleware(asgi_app, verifier, **opts)
    evil = issuer.mint(sub="mallory\r\nX-Admin: yes")
    good = issuer.mint(sub="alice")
    # Spoofed on an open route: removed.
    assert wsgi(w, {"PATH_INFO": "/healthz", "HTTP_X_AUTH_SUB": "admin"})[2]["x_auth_sub"] is None
    assert asgi(a, path="/healthz", headers=[(b"x-auth-sub", b"admin")])[2]["x_auth_sub"] == []
    # Spoofed beside a valid token: replaced by the claim.
    environ = {"PATH_INFO": "/x", "HTTP_X_AUTH_SUB": "admin", "HTTP_AUTHORIZATION": f"Bearer {good}"}
    assert wsgi(w, environ)[2] == {"sub": "alice", "x_auth_sub": "alice"}
    headers = [(b"X-Auth-Sub", b"admin"), (b"authorization", f"Bearer {good}".encode())]
    assert asgi(a, path="/x", headers=headers)[2] == {"sub": "alice", "x_auth_sub": ["alice"]}
    # A claim with a CR LF is sanitised by the core: no second header.
    got = wsgi(w, {"PATH_INFO": "/x", "HTTP_AUTHORIZATION": f"Bearer {evil}"})[2]["x_auth_sub"]
    assert "\r" not in got and "\n" not in got and got.startswith("mallory")
    with pytest.raises(jwtwarden.InvalidConfigError):
        WSGIMiddleware(wsgi_app, verifier, claim_headers={"sub": "Content-Length"})


def test_bad_patterns_are_refused_at_construction(verifier: jwtwarden.Verifier) -> None:
    for bad in (["/a/../b"], ["/a;x"], ["docs"]):
        with pytest.raises(jwtwarden.InvalidConfigError):
            WSGIMiddleware(wsgi_app, verifier, skip_paths=bad)
    with pytest.raises(jwtwarden.InvalidConfigError):
        ASGIMiddleware(asgi_app, verifier, realm='a "b"')


def test_only_options_as_sent_is_a_preflight(verifier: jwtwarden.Verifier) -> None:
    # Methods are case-sensitive (RFC 9110 9.1): "options" is not a CORS
    # preflight, so it is not let through without a token.
    w = WSGIMiddleware(wsgi_app, verifier)
    assert wsgi(w, {"REQUEST_METHOD": "OPTIONS", "PATH_INFO": "/x"})[0] == 200
    assert wsgi(w, {"REQUEST_METHOD": "options", "PATH_INFO": "/x"})[0] == 401
    a = ASGIMiddleware(asgi_app, verifier)
    assert asgi(a, method="OPTIONS", path="/x")[0] == 200
    assert asgi(a, method="options", path="/x")[0] == 401


def test_a_raw_target_that_no_longer_matches_the_path_is_not_trusted(verifier: jwtwarden.Verifier) -> None:
    """A middleware before this one rewrote PATH_INFO / scope["path"] (and
    left the raw target): the rules follow what the application routes on."""
    w = WSGIMiddleware(wsgi_app, verifier, skip_paths=["/docs/*"])
    assert wsgi(w, {"RAW_URI": "/docs/x", "PATH_INFO": "/orders"})[0] == 401
    assert wsgi(w, {"RAW_URI": "/orders", "PATH_INFO": "/docs/x"})[0] == 200
    a = ASGIMiddleware(asgi_app, verifier, skip_paths=["/docs/*"])
    assert asgi(a, raw_path=b"/docs/x", path="/orders")[0] == 401
    assert asgi(a, raw_path=b"/orders", path="/docs/x")[0] == 200
    # ... while one that decodes to it is read as sent.
    assert asgi(a, raw_path=b"/docs%2F..%2Forders", path="/docs/../orders")[0] == 403

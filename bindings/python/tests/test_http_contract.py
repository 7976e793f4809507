"""The WSGI and ASGI middleware against the one HTTP contract table,
``tests/http_contract.json`` (the Go middleware and ``jwtwarden serve`` run
the same table). Every row is replayed: the Python middlewares are adapters
over the core's HTTP decision, like every other front end."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any, Callable
from wsgiref.util import setup_testing_defaults

import jwt
import pytest

import jwtwarden
from conftest import ROOT, Issuer
from jwtwarden import _http
from jwtwarden.asgi import ASGIMiddleware
from jwtwarden.wsgi import WSGIMiddleware

CONTRACT: dict[str, Any] = json.loads((ROOT / "tests" / "http_contract.json").read_text())
CASES: list[dict[str, Any]] = CONTRACT["cases"]

# (status, headers with lower-case names, body bytes)
Response = tuple[int, dict[str, str], bytes]
Send = Callable[[str, str, list[tuple[str, str]]], Response]


def fill(value: Any, subst: dict[str, str]) -> Any:
    """``value`` with ``{issuer}``-style placeholders replaced, recursively."""
    if isinstance(value, str):
        return re.sub(r"\{([a-z0-9_:]+)\}", lambda m: subst[m.group(1)], value)
    if isinstance(value, list):
        return [fill(v, subst) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, subst) for k, v in value.items()}
    return value


def mint(issuer: Issuer, recipe: dict[str, Any]) -> str:
    """A token made by the table's recipe (see its ``token_recipe``)."""
    if "literal" in recipe:
        return str(recipe["literal"])
    now = int(time.time())
    claims = issuer.claims(**recipe.get("claims", {}))
    for name, offset in recipe.get("relative", {}).items():
        claims[name] = now + offset
    key, alg = issuer.private_key(issuer.kid)
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": recipe.get("kid", issuer.kid)})
    if recipe.get("tamper") == "signature":
        head, body, sig = token.split(".")
        sig = sig[:10] + ("B" if sig[10] == "A" else "A") + sig[11:]
        token = f"{head}.{body}.{sig}"
    return token


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    claims = environ.get("jwtwarden.claims")
    result = environ.get("jwtwarden.result")
    body = {"sub": claims["sub"] if claims else None, "cached": result.cached if result else None}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    claims = scope.get("jwtwarden.claims")
    result = scope.get("jwtwarden.result")
    assert scope.get("jwtwarden") is claims  # the old key, kept as an alias
    body = {"sub": claims["sub"] if claims else None, "cached": result.cached if result else None}
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def wsgi_sender(app: WSGIMiddleware) -> Send:
    def send(method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
        setup_testing_defaults(environ)
        for name, value in headers:
            key = "HTTP_" + name.upper().replace("-", "_")
            # As WSGI servers do (PEP 3333, CGI): repeated headers joined with a comma.
            environ[key] = f"{environ[key]}, {value}" if key in environ else value
        seen: dict[str, Any] = {}

        def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            seen["status"] = int(status.split()[0])
            seen["headers"] = {k.lower(): v for k, v in response_headers}

        body = b"".join(app(environ, start_response))
        return seen["status"], seen["headers"], body

    return send


def asgi_sender(app: ASGIMiddleware) -> Send:
    def send(method: str, path: str, headers: list[tuple[str, str]]) -> Response:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "method": method,
            "path": path,
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        }
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> MutableMapping[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def record(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, record))
        start, *bodies = sent
        assert start["type"] == "http.response.start"
        response_headers = {bytes(k).decode("latin-1"): bytes(v).decode("latin-1") for k, v in start["headers"]}
        return start["status"], response_headers, b"".join(b["body"] for b in bodies)

    return send


class Harness:
    def __init__(self, issuer: Issuer) -> None:
        subst = {"issuer": issuer.url, "jwks_uri": issuer.jwks_uri}
        self.verifier = jwtwarden.Verifier(fill(CONTRACT["config"], subst))
        self.closed = jwtwarden.Verifier(fill(CONTRACT["config"], subst))
        self.closed.close()
        self.tokens = {f"token:{name}": mint(issuer, recipe) for name, recipe in CONTRACT["tokens"].items()}
        opts = CONTRACT["middleware"]
        self.senders: dict[tuple[str, str], Send] = {}
        for name, verifier in (("open", self.verifier), ("closed", self.closed)):
            self.senders["wsgi", name] = wsgi_sender(WSGIMiddleware(wsgi_app, verifier, **opts))
            self.senders["asgi", name] = asgi_sender(ASGIMiddleware(asgi_app, verifier, **opts))


@pytest.fixture(scope="module")
def harness(issuer: Issuer) -> Iterator[Harness]:
    h = Harness(issuer)
    yield h
    h.verifier.close()


def matches(expected: Any, actual: Any) -> bool:
    if expected == "*":
        return actual is not None and actual != ""
    if isinstance(expected, str) and expected.endswith("*") and isinstance(actual, str):
        return actual.startswith(expected[:-1])
    return bool(expected == actual)


def check(case: dict[str, Any], response: Response, tokens: list[str]) -> None:
    status, headers, body = response
    expect = case["expect"]
    assert status == expect["status"], body
    for name, value in expect.get("headers", {}).items():
        assert matches(value, headers.get(name.lower())), (name, headers.get(name.lower()))
    for name in expect.get("absent_headers", []):
        assert name.lower() not in headers, name
    decoded = json.loads(body)
    assert decoded.keys() == expect["body"].keys(), decoded
    for key, value in expect["body"].items():
        assert matches(value, decoded[key]), (key, decoded[key])
    if status >= 400:
        assert headers.get("cache-control") == "no-store"
        text = body.decode() + "".join(headers.values())
        for token in tokens:
            assert token not in text, "a refusal echoes the token"


@pytest.mark.parametrize("framework", ["wsgi", "asgi"])
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_contract(harness: Harness, framework: str, case: dict[str, Any]) -> None:
    request = case["request"]
    headers = [(name, fill(value, harness.tokens)) for name, value in request["headers"]]
    assert not any("{" in value for _, value in headers), headers
    tokens = [t for name, t in harness.tokens.items() if any(f"{{{name}}}" in v for _, v in request["headers"])]
    send = harness.senders[framework, case.get("verifier", "open")]
    for _ in range(case.get("repeat", 1)):
        response = send(request["method"], request["path"], headers)
    check(case, response, tokens)


def test_no_row_is_pending() -> None:
    # Every front end passes every row: there is no second list to skip.
    assert "pending_cases" not in CONTRACT
    names = {c["name"] for c in CASES}
    assert "a dot segment does not reach an open path's rules: /docs/../orders needs a token" in names


def test_the_table_is_the_implementation() -> None:
    # The decision is the core's (its own test compares its table with this
    # one); the constants documented in _http must say the same.
    assert _http.STATUS_BY_CATEGORY == CONTRACT["status_by_category"]
    assert _http.RETRY_AFTER == CONTRACT["retry_after"]
    # Every engine category has a status.
    assert {category for _, _, category in jwtwarden.error_kinds()} == set(_http.STATUS_BY_CATEGORY)


def test_every_token_name_is_defined() -> None:
    used = set()
    for case in CASES:
        for _, value in case["request"]["headers"]:
            used |= set(re.findall(r"\{token:([a-z0-9_]+)\}", value))
    assert used <= set(CONTRACT["tokens"])


def test_realm_is_optional_and_checked(harness: Harness) -> None:
    for framework, send in (
        ("wsgi", wsgi_sender(WSGIMiddleware(wsgi_app, harness.verifier))),
        ("asgi", asgi_sender(ASGIMiddleware(asgi_app, harness.verifier))),
    ):
        status, headers, _ = send("GET", "/", [])
        assert status == 401, framework
        assert headers["www-authenticate"] == "Bearer", framework
    # The core's rule: a realm needs no escaping (no quotes, backslashes or
    # controls), so no client sees a challenge a parser could misread.
    with pytest.raises(jwtwarden.InvalidConfigError, match="realm"):
        WSGIMiddleware(wsgi_app, harness.verifier, realm='a "b"')

"""A small application using jwtwarden the way its users do.

``scripts/test-python`` type-checks this file with ``mypy --strict`` (it is
never run), so the stubs stay usable: ``with Verifier(...)`` does not
swallow exceptions (``__exit__`` returns ``None``), and ``code``, ``kind``
and ``category`` are ``int``/``str`` on the exceptions you catch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Callable

import jwtwarden
from jwtwarden.asgi import ASGIMiddleware
from jwtwarden.wsgi import WSGIMiddleware

CONFIG: dict[str, Any] = {
    "issuers": [
        {
            "issuer": "https://idp.example.com",
            "jwks_uri": "https://idp.example.com/.well-known/jwks.json",
            "audiences": ["orders-api"],
        }
    ]
}


def subject(token: str) -> str:
    # If __exit__ were typed "-> bool", mypy would assume the with block may
    # swallow an exception and report a missing return statement here.
    with jwtwarden.Verifier(CONFIG) as verifier:
        claims = verifier.verify(token)
        return str(claims["sub"])


def answer(verifier: jwtwarden.Verifier, token: str) -> tuple[int, str]:
    """An HTTP status and a reason, catching narrowly, by category, and PyJWT-style."""
    try:
        result = verifier.verify_full(token, fresh=True)
    except jwtwarden.ExpiredSignatureError as e:
        code: int = e.code
        kind: str = e.kind
        return 401, f"{kind} ({code})"
    except jwtwarden.InvalidSignatureError as e:
        return 401, e.kind + e.category
    except jwtwarden.InvalidTokenError as e:  # PyJWT's catch-all: every rejected token
        return 401, e.message
    except jwtwarden.KeysUnavailableError as e:  # not a bad token: an outage
        category: str = e.category
        return 503, category
    cached: bool = result.cached
    return 200, f"{result.issuer} cached={cached}"


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    claims: Mapping[str, Any] = environ["jwtwarden.claims"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(claims["sub"]).encode()]


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def build(verifier: jwtwarden.Verifier) -> tuple[WSGIMiddleware, ASGIMiddleware]:
    wsgi = WSGIMiddleware(
        wsgi_app,
        verifier,
        realm="orders",
        skip_paths=["/healthz", "/static/*"],
        skip_if=lambda environ: environ.get("HTTP_X_PROBE") == "1",
        fresh_paths=["/admin/*"],
    )
    asgi = ASGIMiddleware(
        asgi_app,
        verifier,
        issuer="https://idp.example.com",
        skip_paths=["/docs", "/docs/*", "/openapi.json"],
        fresh_if=lambda scope: scope.get("method") == "DELETE",
        authenticate_options=False,
    )
    return wsgi, asgi

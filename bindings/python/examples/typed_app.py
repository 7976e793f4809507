"""A small application using jwtwarden the way its users do.

``scripts/test-python`` type-checks this file with ``mypy --strict`` (it is
never run), so the stubs stay usable: ``with Verifier(...)`` does not
swallow exceptions (``__exit__`` returns ``None``), and ``code``, ``kind``
and ``category`` are ``int``/``str`` on the exceptions you catch.
"""

from __future__ import annotations

from typing import Any

import jwtwarden

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

"""Shared fixtures: the test issuer binary over real HTTP on 127.0.0.1, and
tokens minted independently with PyJWT + cryptography."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import jwtwarden

ROOT = Path(__file__).resolve().parents[3]
ISSUER_BIN = Path(os.environ.get("JWTWARDEN_TESTISSUER", ROOT / "target" / "debug" / "jwtwarden-testissuer"))


class Issuer:
    """A running ``jwtwarden-testissuer`` process, driven through its admin API."""

    def __init__(self, *algs: str) -> None:
        if not ISSUER_BIN.exists():
            pytest.fail(f"{ISSUER_BIN} not found: run `cargo build -p jwtwarden-testissuer`")
        args = [str(ISSUER_BIN)]
        for alg in algs or ("RS256",):
            args += ["--alg", alg]
        # stdin is a pipe: the issuer exits when it reaches EOF, so it cannot
        # outlive this test run even if the run is killed.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url: str = info["url"]
        self.jwks_uri: str = info["jwks_uri"]
        self.kid: str = info["kid"]

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()

    def admin(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + "/admin" + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    # keys
    def published(self) -> list[str]:
        return list(self.admin("GET", "/keys")["published"])

    def add_key(self, alg: str = "RS256") -> str:
        return str(self.admin("POST", "/keys", {"alg": alg})["kid"])

    def retire(self, kid: str) -> None:
        self.admin("DELETE", f"/keys/{kid}")

    def private_key(self, kid: str) -> tuple[Any, str]:
        """The private key of ``kid`` as a ``cryptography`` object, and its alg."""
        answer = self.admin("GET", f"/keys/{kid}/private")
        return load_pem_private_key(answer["pem"].encode(), password=None), answer["alg"]

    # tokens
    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": "api",
            "sub": "user",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def mint(self, kid: Optional[str] = None, headers: Optional[dict[str, Any]] = None, **claims: Any) -> str:
        """A token signed by PyJWT with the private key of ``kid`` (default: the first key).

        Claim overrides set to ``None`` are left out.
        """
        kid = kid or self.kid
        key, alg = self.private_key(kid)
        header: dict[str, Any] = {"kid": kid}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers=header)

    # behaviour
    def fault(self, kind: str, **params: Any) -> None:
        self.admin("POST", "/fault", {"kind": kind, **params})

    def headers(self, **settings: Any) -> None:
        self.admin("POST", "/headers", settings)

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/stats"))

    def reset_stats(self) -> None:
        self.admin("POST", "/reset")

    def config(self, **issuer_overrides: Any) -> dict[str, Any]:
        """A verifier config trusting this issuer, with loopback HTTP allowed."""
        issuer: dict[str, Any] = {"issuer": self.url, "jwks_uri": self.jwks_uri, "audiences": ["api"]}
        issuer.update(issuer_overrides)
        return {"issuers": [issuer], "http": {"allow_http": True}}


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    """One issuer per test module (RS256, PS256, ES256 and EdDSA keys).

    Tests that change its faults or headers put them back; tests that need
    keys of their own use ``new_issuer``.
    """
    iss = Issuer("RS256", "PS256", "ES256", "EdDSA")
    yield iss
    iss.close()


@pytest.fixture
def new_issuer() -> Iterator[Callable[..., Issuer]]:
    """A factory for private issuers, closed at the end of the test."""
    started: list[Issuer] = []

    def start(*algs: str) -> Issuer:
        iss = Issuer(*algs)
        started.append(iss)
        return iss

    yield start
    for iss in started:
        iss.close()


@pytest.fixture
def verifier(issuer: Issuer) -> Iterator[jwtwarden.Verifier]:
    with jwtwarden.Verifier(issuer.config()) as v:
        yield v


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until ``predicate()`` holds (for background behaviour; never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def tamper_payload(token: str, **changes: Any) -> str:
    """The same header and signature over a different payload."""
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims.update(changes)
    new_payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    return f"{header}.{new_payload}.{signature}"

"""Mint the shared token set for every benchmark harness.

Usage: python fixture.py ISSUER_URL OUT_DIR

ISSUER_URL is a running `jwtwarden-testissuer` (admin API enabled) that
publishes one key per algorithm. Writes, under OUT_DIR:

  fixture.json   issuer, JWKS, per-alg keys (kid, JWK, public PEM file) and,
                 per alg and size, one token plus a pool of 64 distinct tokens
                 of the same size (for cache misses)
                 and a crowd of 1,024 cached-hit tokens (RS256, 600B, one per
                 user) for throughput with many distinct tokens
  fixture.txt    the same, one record per line, for the C harness:
                   issuer URL | pem ALG PATH | token ALG SIZE TOKEN | pool ALG SIZE TOKEN |
                   crowd TOKEN
  ALG.pub.pem    public keys (SubjectPublicKeyInfo PEM)

Tokens are padded with extra claims to the same length for every algorithm:
600 bytes ("600B", a plain service token) and 2048 bytes ("2KB", a user
token with profile, roles and a permission list).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
import urllib.request

from cryptography.hazmat.primitives import serialization

ALGS = ["RS256", "PS256", "ES256", "EdDSA"]
SIZES = {"600B": 600, "2KB": 2048}
POOL = 64
CROWD = 1024
TOLERANCE = 16


def call(url: str, method: str = "GET", body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


class Minter:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.now = int(time.time())

    def mint(self, kid: str, claims: dict) -> str:
        return call(self.issuer + "/admin/mint", "POST", {"kid": kid, "claims": claims})["token"]

    def claims(self, size: str, sub: str) -> dict:
        c = {
            "iss": self.issuer,
            "aud": "api",
            "sub": sub,
            "iat": self.now,
            "exp": self.now + 3600,
            "jti": secrets.token_hex(8),
            # What a handler reads (one scope, one custom claim), kept
            # short: the 600-byte token must still fit 600 bytes.
            "scope": "orders:read",
            "tenant": "acme",
        }
        if size == "2KB":
            c.update(
                {
                    "name": "Ada Lovelace",
                    "email": "ada.lovelace@example.com",
                    "email_verified": True,
                    "roles": ["admin", "billing", "support", "developer"],
                    "groups": ["engineering", "platform", "on-call", "eu-staff"],
                    "permissions": [f"svc.resource-{i:02d}:read" for i in range(36)],
                }
            )
        return c

    def sized(self, kid: str, size: str, sub: str) -> str:
        """A token of about SIZES[size] bytes: add a `pad` claim to grow it.

        A token already within TOLERANCE of the target (or over it by no more
        than that) is taken as it is.
        """
        target = SIZES[size]
        claims = self.claims(size, sub)
        token = self.mint(kid, claims)
        if len(token) > target + TOLERANCE:
            raise SystemExit(f"fixture: base claims already exceed {target} bytes ({len(token)})")
        if len(token) >= target - TOLERANCE:
            return token
        claims["pad"] = ""
        for _ in range(4):
            token = self.mint(kid, claims)
            short = target - len(token)
            if abs(short) <= 1:
                break
            claims["pad"] = "x" * max(0, len(claims["pad"]) + (short * 3) // 4)
        return token


def main() -> None:
    issuer, out = sys.argv[1].rstrip("/"), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    published = call(issuer + "/admin/keys")["published"]
    kids: dict[str, str] = {}
    for entry in published:
        kid = entry["kid"] if isinstance(entry, dict) else entry
        alg = call(f"{issuer}/admin/keys/{kid}/private")["alg"]
        kids.setdefault(alg, kid)
    missing = [a for a in ALGS if a not in kids]
    if missing:
        raise SystemExit(f"fixture: issuer publishes no key for {missing}")

    minter = Minter(issuer)
    keys = {}
    lines = [f"issuer {issuer}"]
    for alg in ALGS:
        kid = kids[alg]
        pem = call(f"{issuer}/admin/keys/{kid}/private")["pem"].encode()
        public = serialization.load_pem_private_key(pem, password=None).public_key()
        path = os.path.join(out, f"{alg}.pub.pem")
        with open(path, "wb") as f:
            f.write(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        keys[alg] = {"kid": kid, "jwk": call(f"{issuer}/admin/keys/{kid}/public")["jwk"], "public_pem_file": path}
        lines.append(f"pem {alg} {path}")

    tokens = []
    for alg in ALGS:
        for size in SIZES:
            token = minter.sized(keys[alg]["kid"], size, "svc-bench")
            pool = [minter.sized(keys[alg]["kid"], size, f"svc-{i}") for i in range(POOL)]
            tokens.append({"alg": alg, "size": size, "bytes": len(token), "token": token, "pool": pool})
            lines.append(f"token {alg} {size} {token}")
            lines.extend(f"pool {alg} {size} {t}" for t in pool)
            print(f"fixture: {alg} {size}: {len(token)} bytes", file=sys.stderr)

    crowd = [minter.sized(keys["RS256"]["kid"], "600B", f"user-{i}") for i in range(CROWD)]
    lines.extend(f"crowd {t}" for t in crowd)

    with urllib.request.urlopen(issuer + "/jwks.json", timeout=30) as resp:
        jwks = json.loads(resp.read())
    call(issuer + "/admin/reset", "POST", {})
    fixture = {
        "issuer": issuer,
        "jwks_uri": issuer + "/jwks.json",
        "audience": "api",
        "jwks": jwks,
        "algs": ALGS,
        "sizes": list(SIZES),
        "keys": keys,
        "tokens": tokens,
        "crowd": crowd,
    }
    with open(os.path.join(out, "fixture.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    with open(os.path.join(out, "fixture.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

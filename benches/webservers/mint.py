"""Mint RS256 tokens for the web-server benchmarks, one per line.

Usage: python3 mint.py ISSUER_URL KID COUNT OUT [--prefix P] [--header-kid-prefix H]

Fetches KID's private key from the test issuer's admin API
(`GET /admin/keys/KID/private`) and signs COUNT distinct tokens locally
(one HTTP round trip per token would take minutes for the miss pool),
in as many processes as there are cores. Every token is a ~600-byte
service token of the issuer: `iss`, `aud: api`, `sub` = P + index, `iat`,
`exp` two hours ahead, `scope`, a `jti` and padding claims. With
--header-kid-prefix the header names kid H + index instead of KID (a kid
no key has: the unknown-kid storm), still signed with KID's key.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import sys
import time
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_range(args: tuple) -> list[str]:
    pem, kid, issuer, prefix, header_kid_prefix, start, stop, now = args
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    out = []
    for i in range(start, stop):
        header = {"alg": "RS256", "typ": "JWT", "kid": f"{header_kid_prefix}{i}" if header_kid_prefix else kid}
        claims = {
            "iss": issuer,
            "aud": "api",
            "sub": f"{prefix}{i}",
            "iat": now,
            "exp": now + 7200,
            "jti": f"{prefix}{i}-{now}",
            "scope": "orders:read orders:write",
            "name": "Benchmark User",
            "tenant": "bench",
        }
        signing_input = b64(json.dumps(header, separators=(",", ":")).encode()) + "." + b64(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        sig = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        out.append(signing_input + "." + b64(sig))
    return out


def main() -> None:
    args = sys.argv[1:]
    opts = {"--prefix": "user-", "--header-kid-prefix": ""}
    pos = []
    while args:
        a = args.pop(0)
        if a in opts:
            opts[a] = args.pop(0)
        else:
            pos.append(a)
    if len(pos) != 4:
        sys.exit(__doc__)
    issuer, kid, count, out = pos[0], pos[1], int(pos[2]), pos[3]
    with urllib.request.urlopen(f"{issuer}/admin/keys/{kid}/private", timeout=30) as resp:
        pem = json.loads(resp.read())["pem"]
    now = int(time.time())
    procs = max(1, min(os.cpu_count() or 1, count // 500 or 1))
    step = (count + procs - 1) // procs
    chunks = [
        (pem, kid, issuer, opts["--prefix"], opts["--header-kid-prefix"], s, min(s + step, count), now)
        for s in range(0, count, step)
    ]
    if procs == 1:
        results = [sign_range(c) for c in chunks]
    else:
        with multiprocessing.Pool(procs) as pool:
            results = pool.map(sign_range, chunks)
    with open(out, "w") as f:
        for part in results:
            for t in part:
                f.write(t + "\n")


if __name__ == "__main__":
    main()

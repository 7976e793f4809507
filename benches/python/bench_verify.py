"""jwtwarden (Python) against PyJWT on the same tokens.

Run after ``scripts/test-python`` (which builds and installs the wheel and
the test issuer)::

    target/py-venv/bin/python benches/python/bench_verify.py

Cases, per algorithm, each on tokens signed by the test issuer's keys and
checked against its JWKS on 127.0.0.1:

* ``pyjwt``: ``jwt.decode(token, key, algorithms=[alg], audience=..., issuer=...)``
  with the public key already loaded (PyJWT's best case: no JWKS lookup);
* ``hit``: ``Verifier.verify(token)`` on a token verified before (cache hit);
* ``hit+claims``: a cache hit and the claims a handler reads (subject,
  audience, scopes, one custom claim), next to ``pyjwt+claims``, PyJWT's
  decode reading the same;
* ``miss``: ``Verifier.verify(token)`` on tokens never seen before (signature
  check, claim checks and cache insert), each token verified once;
* ``fresh``: ``Verifier.verify(token, fresh=True)`` (cache skipped).

Each algorithm is measured on a token of about 600 bytes and one padded to
about 2 KB (miss and fresh on the 600-byte one only). Each figure is the best
of ``--repeat`` runs, in microseconds per call, single
thread. Not a test: numbers depend on the machine; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import timeit
import urllib.request
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import jwtwarden

ROOT = Path(__file__).resolve().parents[2]
ISSUER_BIN = Path(os.environ.get("JWTWARDEN_TESTISSUER", ROOT / "target" / "debug" / "jwtwarden-testissuer"))


class Issuer:
    def __init__(self, algs: list[str]) -> None:
        args = [str(ISSUER_BIN)]
        for alg in algs:
            args += ["--alg", alg]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.url, self.jwks_uri = info["url"], info["jwks_uri"]

    def admin(self, method: str, path: str) -> Any:
        req = urllib.request.Request(self.url + "/admin" + path, method=method)
        with urllib.request.urlopen(req) as resp:
            return json.loads(resp.read())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def per_call_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def per_token_us(fn: Callable[[str], object], tokens: list[str], repeat: int, verifier: jwtwarden.Verifier) -> float:
    """Each token once, cache emptied (policy version bumped) before each run."""
    best = float("inf")
    for _ in range(repeat):
        verifier.bump_policy_version()
        start = time.perf_counter()
        for t in tokens:
            fn(t)
        best = min(best, time.perf_counter() - start)
    return best / len(tokens) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algs", default="RS256,ES256,PS256,EdDSA")
    parser.add_argument("--tokens", type=int, default=2000, help="distinct tokens per algorithm for the miss case")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    algs = args.algs.split(",")

    print(f"python {platform.python_version()}, jwtwarden {jwtwarden.__version__}, PyJWT {jwt.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cpus")
    issuer = Issuer(algs)
    try:
        config = {
            "issuers": [{"issuer": issuer.url, "jwks_uri": issuer.jwks_uri, "audiences": ["api"]}],
            "http": {"allow_http": True},
        }
        verifier = jwtwarden.Verifier(config)
        kids = issuer.admin("GET", "/keys")["published"]
        rows = []
        for kid, alg in zip(kids, algs):
            priv = load_pem_private_key(issuer.admin("GET", f"/keys/{kid}/private")["pem"].encode(), None)
            public = jwt.PyJWK(issuer.admin("GET", f"/keys/{kid}/public")["jwk"]).key
            now = int(time.time())

            def mint(i: int, groups: list[str] | None = None) -> str:
                claims: dict[str, Any] = {"iss": issuer.url, "aud": "api", "sub": f"user-{i}", "iat": now,
                                          "nbf": now, "exp": now + 3600, "jti": f"{alg}-{i}",
                                          "scope": "read write", "tenant": "acme"}
                if groups is not None:
                    claims["groups"] = groups
                return jwt.encode(claims, priv, algorithm=alg, headers={"kid": kid})

            def padded(i: int, size: int) -> str:
                groups: list[str] = []
                token = mint(i)
                while len(token) < size:
                    groups.append(f"group-{len(groups):03d}-with-a-longish-name")
                    token = mint(i, groups)
                return token

            tokens = [mint(i) for i in range(1, args.tokens + 1)]
            for size_name, token in (("600B", mint(0)), ("2KB", padded(0, 2048))):
                verifier.verify(token)

                def pyjwt_decode(t: str = token) -> Any:
                    return jwt.decode(t, public, algorithms=[alg], audience="api", issuer=issuer.url)

                def handler_reads(claims: Mapping[str, Any]) -> object:
                    aud = claims["aud"]
                    return (claims["sub"], [aud] if isinstance(aud, str) else aud, claims["scope"].split(),
                            claims["tenant"])

                assert pyjwt_decode() == jwtwarden.thaw(verifier.verify(token))
                slow_n = 2000 if alg != "EdDSA" else 5000
                pyjwt = per_call_us(pyjwt_decode, slow_n, args.repeat)
                pyjwt_claims = per_call_us(lambda: handler_reads(pyjwt_decode()), slow_n, args.repeat)
                hit = per_call_us(lambda: verifier.verify(token), 200_000, args.repeat)
                hit_claims = per_call_us(lambda: handler_reads(verifier.verify(token)), 200_000, args.repeat)
                if size_name == "600B":
                    fresh = per_call_us(lambda: verifier.verify(token, fresh=True), slow_n, args.repeat)
                    miss = per_token_us(verifier.verify, tokens, args.repeat, verifier)
                    pyjwt_many = per_token_us(lambda t: pyjwt_decode(t), tokens, args.repeat, verifier)
                else:
                    fresh = miss = pyjwt_many = float("nan")
                rows.append((alg, len(token), pyjwt, pyjwt_many, hit, pyjwt_claims, hit_claims, miss, fresh))
        print()
        print(f"{'alg':6} {'bytes':>5} {'pyjwt':>8} {'pyjwt*':>8} {'hit':>8} {'pyjwt+cl':>9} {'hit+cl':>8} "
              f"{'miss*':>8} {'fresh':>8} {'pyjwt/hit':>10} {'+claims':>8} {'pyjwt*/miss*':>13}")
        for alg, size, pyjwt, pyjwt_many, hit, pyjwt_claims, hit_claims, miss, fresh in rows:
            print(f"{alg:6} {size:5d} {pyjwt:8.2f} {pyjwt_many:8.2f} {hit:8.3f} {pyjwt_claims:9.2f} "
                  f"{hit_claims:8.3f} {miss:8.2f} {fresh:8.2f} {pyjwt / hit:9.0f}x {pyjwt_claims / hit_claims:7.0f}x "
                  f"{pyjwt_many / miss:12.1f}x")
        print("\nus per call, best of", args.repeat, "runs; * = each of", args.tokens, "distinct tokens once")
        m = verifier.metrics()
        print("cache:", {k: m["cache"][k] for k in ("hits", "misses", "inserts", "evictions")},
              "jwks fetches:", m["issuers"][0]["fetches"])
        verifier.close()
    finally:
        issuer.close()


if __name__ == "__main__":
    sys.exit(main())

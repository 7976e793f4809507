"""The Python part of the comparison run by benches/run.

jwtwarden (cache hit and miss) against PyJWT (``jwt.decode`` with a key
already in hand, and with ``PyJWKClient`` fetching the JWKS) and against
authlib's ``authlib.jose``, on the shared token set; then an unknown-kid
storm against the libraries that fetch keys themselves (jwtwarden,
PyJWKClient), and the throughput of 8 threads verifying cached tokens with
and without storm tokens among them. Writes JSON lines.

    python bench.py FIXTURE.json OUT.jsonl [--only timings,storm,mixed]

Timing follows benches/rust/shared.rs: warm up for a tenth of the budget
(BENCH_SECONDS, default 1), median ns/op of >= 2 ms batches for six tenths,
p50/p99 of single timed calls for three tenths. An operation that is one
call is timed as that call (see ``measure``).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

import authlib.deprecate  # noqa: F401  (installs an "always" filter; ours below must come after it)
import jwt as pyjwt
import jwtwarden

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # authlib.jose announces its move to joserfc
    from authlib.jose import JsonWebKey
    from authlib.jose import jwt as authlib_jwt

BUDGET = max(0.05, float(os.environ.get("BENCH_SECONDS", "1.0")))
STORM_TOKENS = int(os.environ.get("BENCH_STORM_TOKENS", "10000"))
LEEWAY = 30
clock = time.perf_counter_ns


def quantile(v: list[int], q: float) -> float:
    if not v:
        return float("nan")
    v.sort()
    return float(v[int((len(v) - 1) * q + 0.5)])


NO_ARG = object()


def measure(op: Callable[..., Any], arg: Any = NO_ARG, budget: float = BUDGET) -> dict[str, float]:
    """Time ``op(arg)`` (or ``op()``). Pass the call and its argument rather
    than a lambda wrapping them when the operation is one call: the loop
    then makes that call and nothing else, as a handler would. A lambda
    adds a Python function call per operation (about 20 ns here), a sixth
    of a jwtwarden hit and none of its cost."""
    if arg is NO_ARG:

        def run(n: int) -> None:
            for _ in range(n):
                op()

        def once() -> None:
            op()

    else:

        def run(n: int) -> None:
            for _ in range(n):
                op(arg)

        def once() -> None:
            op(arg)

    end = clock() + int(budget * 1e9 / 10)
    while clock() < end:
        run(1)
    batch = 1
    while True:
        t = clock()
        run(batch)
        if clock() - t >= 2_000_000 or batch >= 1 << 30:
            break
        batch *= 2
    per_op: list[float] = []
    iterations = 0
    end = clock() + int(budget * 1e9 * 6 / 10)
    while clock() < end or len(per_op) < 3:
        t = clock()
        run(batch)
        per_op.append((clock() - t) / batch)
        iterations += batch
    per_op.sort()
    single: list[int] = []
    end = clock() + int(budget * 1e9 * 3 / 10)
    while True:
        t = clock()
        once()
        t2 = clock()
        single.append(t2 - t)
        if (t2 >= end and len(single) >= 100) or len(single) >= 2_000_000:
            break
    iterations += len(single)
    return {
        "ns_per_op": per_op[len(per_op) // 2],
        "p50_ns": quantile(single, 0.50),
        "p99_ns": quantile(single, 0.99),
        "iterations": iterations,
    }


class Out:
    def __init__(self, path: str) -> None:
        self.f = open(path, "a")

    def record(self, r: dict[str, Any]) -> None:
        r["language"] = "python"
        line = json.dumps(r)
        self.f.write(line + "\n")
        self.f.flush()
        print(line, file=sys.stderr)

    def timing(self, library: str, operation: str, case: dict[str, Any], s: dict[str, float]) -> None:
        self.record(
            {
                "library": library,
                "operation": operation,
                "alg": case["alg"],
                "size": case["size"],
                "token_bytes": case["bytes"],
                "threads": 1,
                "ops_per_s": 1e9 / s["ns_per_op"],
                **s,
            }
        )

    def skipped(self, library: str, operation: str, alg: str, reason: str) -> None:
        print(f"skipped: python {library} {operation} {alg}: {reason}", file=sys.stderr)
        self.record({"library": library, "operation": operation, "alg": alg, "skipped": reason})


def admin(issuer: str, method: str, path: str) -> dict[str, Any]:
    req = urllib.request.Request(issuer + path, data=b"{}" if method == "POST" else None, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def storm_token(token: str, alg: str, tag: str, i: int) -> str:
    header = json.dumps({"alg": alg, "kid": f"storm-{tag}-{i}", "typ": "JWT"}, separators=(",", ":"))
    b64 = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    return b64 + token[token.index(".") :]


def storm(
    out: Out,
    fx: dict[str, Any],
    case: dict[str, Any],
    library: str,
    cooldown: float | None,
    note: str,
    verify: Callable[[str], Any],
) -> None:
    """Storm tokens on one thread (stopping early after 20 s) while this one
    times legitimate calls until the storm is over; count JWKS requests."""
    legit = case["token"]
    verify(legit)
    baseline = measure(verify, legit, budget=0.3)
    tokens = [storm_token(legit, case["alg"], library, i) for i in range(STORM_TOKENS)]
    admin(fx["issuer"], "POST", "/admin/reset")
    done = threading.Event()
    state = {"sent": 0, "accepted": 0, "ms": 0.0}

    def run() -> None:
        t = clock()
        for tok in tokens:
            try:
                verify(tok)
                state["accepted"] += 1
            except Exception:
                pass
            state["sent"] += 1
            if clock() - t > 20e9:
                break
        state["ms"] = (clock() - t) / 1e6
        done.set()

    worker = threading.Thread(target=run)
    samples: list[int] = []
    worker.start()
    while not done.is_set():
        t = clock()
        verify(legit)
        samples.append(clock() - t)
    worker.join()
    requests = admin(fx["issuer"], "GET", "/admin/stats")["jwks_requests"]
    out.record(
        {
            "library": library,
            "operation": "storm",
            "alg": case["alg"],
            "threads": 2,
            "storm_tokens": state["sent"],
            "storm_accepted": state["accepted"],
            "jwks_requests": requests,
            "requests_per_10k": requests * 10000 / max(1, state["sent"]),
            "storm_ms": state["ms"],
            "cooldown_secs": cooldown,
            "legit_samples": len(samples),
            "legit_p50_ns": quantile(samples, 0.5),
            "legit_p99_ns": quantile(samples, 0.99),
            "baseline_p99_ns": baseline["p99_ns"],
            "note": note,
        }
    )


MIX_THREADS = 8
MIX_STORM_EVERY = 10


def mixed_threads(out: Out, fx: dict[str, Any], case: dict[str, Any], verifier: Any) -> None:
    """Throughput of MIX_THREADS threads verifying the cached legitimate token,
    first alone (hits only), then with every MIX_STORM_EVERY-th call a storm
    token (an unknown kid, each distinct): a call that may not keep the GIL
    would make every thread wait for it (the convoy of issue 29)."""
    legit = case["token"]
    verifier.verify(legit)
    storm = [storm_token(legit, case["alg"], "mix", i) for i in range(MIX_THREADS * 200_000 // MIX_STORM_EVERY)]
    admin(fx["issuer"], "POST", "/admin/reset")

    def run(mixed: bool) -> dict[str, Any]:
        start = threading.Barrier(MIX_THREADS + 1)
        stop = threading.Event()
        calls = [0] * MIX_THREADS
        storms = [0] * MIX_THREADS

        def worker(n: int) -> None:
            verify = verifier.verify
            mine = storm[n::MIX_THREADS]
            i = 0
            start.wait()
            while not stop.is_set():
                for _ in range(MIX_STORM_EVERY - 1):
                    verify(legit)
                if mixed:
                    try:
                        verify(mine[i % len(mine)])
                    except jwtwarden.JwtWardenError:
                        pass
                    storms[n] += 1
                    i += 1
                else:
                    verify(legit)
                calls[n] += MIX_STORM_EVERY

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(MIX_THREADS)]
        for t in threads:
            t.start()
        start.wait()
        t0 = clock()
        time.sleep(BUDGET)
        stop.set()
        for t in threads:
            t.join()
        elapsed = (clock() - t0) / 1e9
        return {"calls": sum(calls), "storm_calls": sum(storms), "seconds": elapsed, "ops_per_s": sum(calls) / elapsed}

    hits = run(False)
    mixed = run(True)
    requests = admin(fx["issuer"], "GET", "/admin/stats")["jwks_requests"]
    for operation, r in (("hits only", hits), (f"hits + 1 storm token in {MIX_STORM_EVERY}", mixed)):
        out.record(
            {
                "library": "jwtwarden",
                "operation": "mixed",
                "mix": operation,
                "alg": case["alg"],
                "size": case["size"],
                "threads": MIX_THREADS,
                "calls": r["calls"],
                "storm_calls": r["storm_calls"],
                "seconds": r["seconds"],
                "ops_per_s": r["ops_per_s"],
                "jwks_requests": requests,
                "switch_interval_s": sys.getswitchinterval(),
            }
        )


def main() -> None:
    if len(sys.argv) not in (3, 5) or (len(sys.argv) == 5 and sys.argv[3] != "--only"):
        raise SystemExit("usage: bench.py FIXTURE.json OUT.jsonl [--only timings,storm,mixed]")
    only = set(sys.argv[4].split(",")) if len(sys.argv) == 5 else {"timings", "storm", "mixed"}
    with open(sys.argv[1]) as f:
        fx = json.load(f)
    out = Out(sys.argv[2])
    issuer, aud = fx["issuer"], fx["audience"]

    def config(cache: dict[str, Any]) -> dict[str, Any]:
        return {
            "issuers": [{"issuer": issuer, "jwks_uri": fx["jwks_uri"], "audiences": [aud]}],
            "http": {"allow_http": True},
            "cache": cache,
        }

    hits = jwtwarden.Verifier(config({}))
    # Capacity 1 and a rotating pool of distinct tokens: every call is a miss.
    misses = jwtwarden.Verifier(config({"capacity": 1, "shards": 1}))
    jwk_client = pyjwt.PyJWKClient(fx["jwks_uri"])
    keyset = JsonWebKey.import_key_set(fx["jwks"])
    authlib_options = {
        "iss": {"essential": True, "value": issuer},
        "aud": {"essential": True, "value": aud},
        "exp": {"essential": True},
    }

    def via_pyjwt(alg: str) -> Callable[[str], Any]:
        key = pyjwt.PyJWK(fx["keys"][alg]["jwk"], algorithm=alg).key
        return lambda t: pyjwt.decode(t, key, algorithms=[alg], audience=aud, issuer=issuer, leeway=LEEWAY)

    def via_jwk_client(alg: str) -> Callable[[str], Any]:
        def verify(t: str) -> Any:
            key = jwk_client.get_signing_key_from_jwt(t).key
            return pyjwt.decode(t, key, algorithms=[alg], audience=aud, issuer=issuer, leeway=LEEWAY)

        return verify

    def via_authlib(t: str) -> Any:
        claims = authlib_jwt.decode(t, keyset, claims_options=authlib_options)
        claims.validate(leeway=LEEWAY)
        return claims

    def handler_reads(claims: Any) -> tuple[Any, ...]:
        """What a handler reads from the claims: subject, audiences, scopes, one custom claim."""
        aud = claims["aud"]
        return (claims["sub"], [aud] if isinstance(aud, str) else aud, claims["scope"].split(), claims["tenant"])

    for case in fx["tokens"] if "timings" in only else []:
        token, alg, pool = case["token"], case["alg"], case["pool"]
        hits.verify(token)
        out.timing("jwtwarden", "hit", case, measure(hits.verify, token))
        assert all(handler_reads(hits.verify(token))), "hit+claims: claims missing"
        out.timing("jwtwarden", "hit+claims", case, measure(lambda token=token: handler_reads(hits.verify(token))))
        rotation = itertools.cycle(pool)
        out.timing("jwtwarden", "miss", case, measure(lambda rotation=rotation: misses.verify(next(rotation))))
        peers: list[tuple[str, Callable[[str], Any]]] = [
            ("pyjwt", via_pyjwt(alg)),
            ("pyjwt+PyJWKClient", via_jwk_client(alg)),
            ("authlib", via_authlib),
        ]
        for name, verify in peers:
            try:
                verify(token)
            except Exception as e:  # a peer that cannot verify the token is reported, not timed
                out.skipped(name, "verify", alg, f"rejects the token: {type(e).__name__}: {e}")
                continue
            out.timing(name, "verify", case, measure(verify, token))

    case = next(c for c in fx["tokens"] if c["alg"] == "RS256" and c["size"] == "600B")
    if "mixed" in only:
        mixed_threads(out, fx, case, jwtwarden.Verifier(config({})))
    if "storm" not in only:
        return
    fresh = jwtwarden.Verifier(config({}))
    storm(out, fx, case, "jwtwarden", 30, "default unknown_kid_cooldown_secs", fresh.verify)
    client = pyjwt.PyJWKClient(fx["jwks_uri"])

    def jwk_client_verify(t: str) -> Any:
        key = client.get_signing_key_from_jwt(t).key
        return pyjwt.decode(t, key, algorithms=["RS256"], audience=aud, issuer=issuer, leeway=LEEWAY)

    storm(
        out,
        fx,
        case,
        "pyjwt+PyJWKClient",
        client.cooldown_duration,
        "PyJWKClient cooldown_duration (default 30 s); its initial fetch starts the cooldown",
        jwk_client_verify,
    )


if __name__ == "__main__":
    main()

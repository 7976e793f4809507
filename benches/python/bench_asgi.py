"""ASGI middleware requests/s on cache hits: the middleware as it is against
an earlier version of it (``--before``, a copy of ``jwtwarden/asgi.py``
from git), on the same wheel, in interleaved rounds.

Run after ``scripts/test-python`` (which builds and installs the wheel and
the test issuer)::

    git show 487dd6b:bindings/python/python/jwtwarden/asgi.py > target/asgi_before.py
    target/py-venv/bin/python benches/python/bench_asgi.py --before target/asgi_before.py

In-process, no HTTP server: one asyncio event loop, ``--connections``
tasks each sending requests one after another with the same bearer token
(a cache hit after the first) through ``ASGIMiddleware`` to an app that
answers 200, yielding to the loop between requests as a server's socket
I/O does; requests/s over ``--seconds`` per round, ``--rounds`` rounds
per variant, the variants interleaved so both see the same machine state;
the median round is reported. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import jwtwarden
from jwtwarden.asgi import ASGIMiddleware

ROOT = Path(__file__).resolve().parents[2]
ISSUER_BIN = Path(os.environ.get("JWTWARDEN_TESTISSUER", ROOT / "target" / "debug" / "jwtwarden-testissuer"))


def load_before(path: str) -> Any:
    """The middleware class of an earlier asgi.py, imported inside the
    installed package (its relative imports resolve there)."""
    spec = importlib.util.spec_from_file_location("jwtwarden._asgi_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.ASGIMiddleware


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def load(middleware: Any, token: str, connections: int, seconds: float) -> float:
    headers = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]
    done = 0
    ok = 0
    stop = False

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def connection() -> None:
        nonlocal done, ok
        status = [0]

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]

        while not stop:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "method": "GET", "path": "/", "headers": headers}
            await middleware(scope, receive, send)
            # A server yields to the loop between requests (socket I/O);
            # without it, an answer given inline would never let the round end.
            await asyncio.sleep(0)
            done += 1
            ok += status[0] == 200

    tasks = [asyncio.ensure_future(connection()) for _ in range(connections)]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    stop = True
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    assert ok == done, f"{done - ok} requests refused"
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="an earlier jwtwarden/asgi.py to compare with")
    parser.add_argument("--connections", default="1,32", help="comma-separated concurrent connections")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="append one JSON line per case here")
    args = parser.parse_args()

    before_cls = load_before(args.before)
    proc = subprocess.Popen([str(ISSUER_BIN), "--alg", "RS256"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    info = json.loads(proc.stdout.readline())
    try:
        with urllib.request.urlopen(f"{info['url']}/admin/keys/{info['kid']}/private") as resp:
            key = load_pem_private_key(json.loads(resp.read())["pem"].encode(), None)
        now = int(time.time())
        claims = {"iss": info["url"], "aud": "api", "sub": "bench", "iat": now, "exp": now + 3600}
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": info["kid"]})
        config = {
            "issuers": [{"issuer": info["url"], "jwks_uri": info["jwks_uri"], "audiences": ["api"]}],
            "http": {"allow_http": True},
        }
        with jwtwarden.Verifier(config) as verifier:
            verifier.verify(token)
            variants = {"before": before_cls(app, verifier), "after": ASGIMiddleware(app, verifier)}
            print(
                f"python {sys.version.split()[0]}, jwtwarden {jwtwarden.__version__}, {os.cpu_count()} cpus, "
                f"load {os.getloadavg()[0]:.2f}; {args.seconds} s per round, {args.rounds} rounds, interleaved"
            )
            for connections in (int(c) for c in args.connections.split(",")):
                rates: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.rounds):
                    for name, middleware in variants.items():
                        rates[name].append(asyncio.run(load(middleware, token, connections, args.seconds)))
                medians = {name: statistics.median(r) for name, r in rates.items()}
                for name, r in rates.items():
                    print(
                        f"{connections:3d} connections  {name:6s}  median {medians[name]:10,.0f} requests/s"
                        f"  rounds {', '.join(f'{x:,.0f}' for x in r)}"
                    )
                print(f"{connections:3d} connections  after/before {medians['after'] / medians['before']:.1f}x")
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(
                            json.dumps(
                                {"connections": connections, "rounds": rates, "median": medians,
                                 "load": os.getloadavg()}
                            )
                            + "\n"
                        )
    finally:
        proc.stdin.close()
        proc.wait()


if __name__ == "__main__":
    main()

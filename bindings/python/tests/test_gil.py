"""No GIL convoy: a call the engine answers without a signature check or a
network wait keeps the GIL; only the rest releases it.

Releasing the GIL for a call that takes microseconds costs more than the
call: taking it back waits for the thread that took it to give it up, up to
the switch interval (5 ms) when that thread is busy in Python. With another
thread verifying cached tokens, an unknown-kid storm got about 450 tokens
per second through that way (issue 29; the storm row of benches/RESULTS.md).

Whether a call let go of the GIL is read from the binding's count of engine
calls made with it released (``_native._detached_calls()``): every release
goes through that one function. Another thread's timing would only say so
by chance.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden import _native


def with_kid(token: str, kid: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode()).rstrip(b"=").decode()
    return header + token[token.index(".") :]


def releases(call: Callable[[], object]) -> int:
    """How many times ``call()`` released the GIL (only this thread calls in)."""
    before = _native._detached_calls()
    try:
        call()
    except jwtwarden.JwtWardenError:
        pass
    return _native._detached_calls() - before


def test_answers_without_waiting_keep_the_gil_and_the_rest_releases_it(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config(algorithms=["RS256"])) as v:
        good = iss.mint()
        v.verify(good)
        first_unknown = with_kid(good, "first-unknown")
        # The first unknown kid may fetch: the GIL is released for it.
        assert releases(lambda: v.verify(first_unknown)) == 1
        fetches = iss.stats()["jwks_requests"]
        head, body, sig = good.split(".")
        decided: dict[str, str | bytes] = {
            "hit": good,
            "hit as bytes": good.encode(),
            "too large": "x" * 20_000,
            "malformed": "a.b",
            "bad base64": f"{head}.{body}!.{sig}",
            "unknown issuer": iss.mint(iss="https://evil.example"),
            "alg none": "eyJhbGciOiJub25lIn0." + body + ".",
            "alg not allowed": f"eyJhbGciOiJIUzI1NiJ9.{body}.{sig}",
            "remembered unknown kid": first_unknown,
            **{f"storm token {i}": with_kid(good, f"storm-{i}") for i in range(200)},
        }
        for name, token in decided.items():
            for call in (v.verify, v.verify_full):
                assert releases(lambda: call(token)) == 0, f"{name}: {call.__name__} released the GIL"
        # ... and what needs a signature check does release it.
        mint = iss.mint()
        assert releases(lambda: v.verify(mint)) == 1, "a miss"
        assert releases(lambda: v.verify(mint)) == 0, "its hit"
        assert releases(lambda: v.verify(mint, fresh=True)) == 1, "fresh"
        assert releases(lambda: v.verify(f"{head}.{body}.{sig[:-4]}AAAA")) == 1, "a bad signature, known kid"
        assert releases(lambda: v.verify(iss.mint(aud="other"))) == 1, "a policy refusal after the signature"
        assert iss.stats()["jwks_requests"] == fetches, "the storm cost no fetch"
        assert v.metrics()["verifications"]["rejected"]["unknown_kid"] == 1 + 2 * (1 + 200)


def test_a_storm_beside_threads_verifying_hits_completes(new_issuer: Callable[..., Issuer]) -> None:
    """The storm benchmark's shape, end to end: 10,000 unknown kids from one
    thread while 4 others verify cached tokens; none of the storm releases
    the GIL, and it costs one fetch."""
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        good = iss.mint()
        v.verify(good)
        iss.reset_stats()
        storm = [with_kid(good, f"storm-{i}") for i in range(10_000)]
        done = threading.Event()
        outcome: dict[str, Any] = {}

        def stormer() -> None:
            rejected = 0
            start = _native._detached_calls()
            for token in storm:
                try:
                    v.verify(token)
                except jwtwarden.UnknownKidError:
                    rejected += 1
            outcome["rejected"] = rejected
            # Other threads only hit the cache, which keeps the GIL too.
            outcome["releases"] = _native._detached_calls() - start
            done.set()

        def hits() -> None:
            while not done.is_set():
                v.verify(good)

        threads = [threading.Thread(target=hits) for _ in range(4)] + [threading.Thread(target=stormer)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert outcome["rejected"] == 10_000
        assert outcome["releases"] <= 1, "only the first storm token may fetch (and release the GIL)"
        assert iss.stats()["jwks_requests"] == 1

"""Many threads verifying at once while the issuer's keys rotate."""

from __future__ import annotations

import random
import threading
import time
from typing import Callable

import pytest

import jwtwarden
from conftest import Issuer, tamper_payload

THREADS = 8
ROUNDS = 6


def test_eight_threads_while_keys_rotate(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    config = iss.config(refresh={"unknown_kid_cooldown_secs": 0})
    config["cache"] = {"capacity": 64}  # small: evictions and re-verification happen too
    with jwtwarden.Verifier(config) as v:
        good: list[str] = [iss.mint()]
        bad: list[str] = [tamper_payload(good[0], sub="admin")]
        lock = threading.Lock()
        stop = threading.Event()
        errors: list[str] = []
        counts = [0] * THREADS

        def worker(n: int) -> None:
            rng = random.Random(n)
            try:
                while not stop.is_set():
                    with lock:
                        token = rng.choice(good)
                        forged = rng.choice(bad)
                    claims = v.verify(token, fresh=rng.random() < 0.1)
                    if claims["sub"] != "user":
                        errors.append(f"thread {n}: wrong claims {claims}")
                    try:
                        v.verify(forged)
                        errors.append(f"thread {n}: a forged token verified")
                    except jwtwarden.InvalidSignatureError:
                        pass
                    counts[n] += 1
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(f"thread {n}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for t in threads:
            t.start()
        try:
            for round_ in range(ROUNDS):
                # A new key is published; tokens signed with it go into the
                # mix at once, so some thread meets its kid first and the
                # verifier fetches while others keep verifying.
                kid = iss.add_key(["ES256", "RS256", "EdDSA"][round_ % 3])
                token = iss.mint(kid)
                with lock:
                    good.extend(iss.mint(kid) for _ in range(3))
                    good.append(token)
                    bad.append(tamper_payload(token, sub="root"))
                    floor = sum(counts)
                # Let every thread make progress with this round's tokens.
                while sum(counts) < floor + 200 and not errors and all(t.is_alive() for t in threads):
                    time.sleep(0.01)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert not errors, errors[:5]
        assert all(c > 0 for c in counts), counts

        m = v.metrics()
        assert m["verifications"]["rejected"].keys() == {"invalid_signature"}
        assert m["issuers"][0]["fetches"]["unknown_kid"] >= 1
        assert m["cache"]["evictions"] > 0 or m["cache"]["entries"] <= 64

        # Retiring the original key takes effect for every thread's cache.
        iss.retire(iss.kid)
        v.refresh_issuer(iss.url)
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(good[0])

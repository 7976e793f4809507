"""No GIL convoy: a call the engine answers without a signature check or a
network wait keeps the GIL; only the rest releases it.

Releasing the GIL for a call that takes microseconds costs more than the
call: taking it back waits for the thread that took it to give it up, up to
the switch interval (5 ms) when that thread is busy in Python. With another
thread verifying cached tokens, an unknown-kid storm managed about 450
tokens per second that way (issue 29).

How a release is seen, without timing anything: a *witness* thread counts
and yields the GIL on every turn (``time.sleep(0)``), so it is always
waiting for the GIL while the test holds it, and it runs, and counts, only
if the test's call lets go of the GIL. The switch interval is raised for
the test so the interpreter does not hand the GIL over by itself.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import jwtwarden
from conftest import Issuer


class Witness:
    def __init__(self) -> None:
        self.turns = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop:
            self.turns += 1
            time.sleep(0)

    def __enter__(self) -> Witness:
        self._thread.start()
        while self.turns < 3:  # running, and yielding
            time.sleep(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()

    def released(self, call: Callable[[], object]) -> bool:
        """Whether the witness ran during ``call()``: the GIL was let go."""
        before = self.turns
        try:
            call()
        except jwtwarden.JwtWardenError:
            pass
        return self.turns != before


@pytest.fixture
def long_switch_interval() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def with_kid(token: str, kid: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode()).rstrip(b"=").decode()
    return header + token[token.index(".") :]


def test_answers_without_waiting_keep_the_gil_and_the_rest_releases_it(
    new_issuer: Callable[..., Issuer], long_switch_interval: None
) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        good = iss.mint()
        v.verify(good)
        # One unknown kid fetches (the cooldown starts); a storm follows.
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(with_kid(good, "first-unknown"))
        fetches = iss.stats()["jwks_requests"]
        # Minted beforehand: signing (in `cryptography`) may release the GIL.
        foreign = iss.mint(iss="https://evil.example")
        unseen = [iss.mint() for _ in range(200)]
        decided: list[tuple[str, Callable[[], Any]]] = [
            ("hit", lambda: v.verify(good)),
            ("hit, full", lambda: v.verify_full(good)),
            ("malformed", lambda: v.verify("a.b")),
            ("unknown issuer", lambda: v.verify(foreign)),
            ("alg none", lambda: v.verify("eyJhbGciOiJub25lIn0." + good.split(".")[1] + ".")),
            ("remembered unknown kid", lambda: v.verify(with_kid(good, "first-unknown"))),
        ]
        storm = [with_kid(good, f"storm-{i}") for i in range(300)]
        with Witness() as witness:
            for name, call in decided:
                for _ in range(20):
                    assert not witness.released(call), f"{name}: the GIL was released"
            for i, token in enumerate(storm):
                assert not witness.released(lambda: v.verify(token)), f"storm token {i}: the GIL was released"
                assert not witness.released(lambda: v.verify_full(token)), f"storm token {i}: the GIL was released"
            # The witness does see a release: a signature check lets go of
            # the GIL (tokens never seen, until the witness catches one).
            assert any(witness.released(lambda: v.verify(t)) for t in unseen), "no release seen"
        assert iss.stats()["jwks_requests"] == fetches, "the storm cost no fetch"
        assert v.metrics()["verifications"]["rejected"]["unknown_kid"] == 1 + 20 + 2 * 300

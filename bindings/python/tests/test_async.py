"""``Verifier.verify_async`` / ``verify_full_async``: what the engine decides
without a signature check or a network wait is answered inline (the
coroutine finishes on its first step, no thread, no suspension); the rest
runs in jwtwarden's worker threads, and the event loop never waits."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

import jwtwarden
from conftest import Issuer
from jwtwarden import _aio


def with_kid(token: str, kid: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "RS256", "kid": kid}).encode()).rstrip(b"=").decode()
    return header + token[token.index(".") :]


def first_step(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine's first step outside any event loop: it must finish
    there (an answer given inline never suspends). Returns its value."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    pytest.fail("the coroutine suspended: it was not answered inline")


def test_hits_are_answered_inline(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint(sub="alice")
    verifier.verify(token)
    claims = verifier.verify(token)  # a hit: the mapping memoized on the cached result
    assert first_step(verifier.verify_async(token)) is claims, "the same memoized mapping as a hit of verify"
    result = first_step(verifier.verify_full_async(token))
    assert isinstance(result, jwtwarden.VerifiedToken) and result.cached and result.claims["sub"] == "alice"
    pinned = first_step(verifier.verify_full_async(token, issuer=issuer.url))
    assert pinned.issuer == issuer.url


def test_rejections_decided_without_waiting_are_raised_inline(
    new_issuer: Callable[..., Issuer],
) -> None:
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        good = iss.mint()
        with pytest.raises(jwtwarden.UnknownKidError):
            v.verify(with_kid(good, "starts-the-cooldown"))
        fetches = iss.stats()["jwks_requests"]
        cases: list[tuple[str | bytes, type[jwtwarden.JwtWardenError]]] = [
            ("a.b", jwtwarden.InvalidSegmentsError),
            (b"a.b", jwtwarden.InvalidSegmentsError),
            ("x" * 20000, jwtwarden.TokenTooLargeError),
            (iss.mint(iss="https://evil.example"), jwtwarden.UnknownIssuerError),
            (with_kid(good, "starts-the-cooldown"), jwtwarden.UnknownKidError),
            *[(with_kid(good, f"storm-{i}"), jwtwarden.UnknownKidError) for i in range(100)],
        ]
        for token, exc in cases:
            for full in (False, True):
                coro = v.verify_full_async(token) if full else v.verify_async(token)
                with pytest.raises(exc):
                    first_step(coro)
        with pytest.raises(jwtwarden.UnknownIssuerError):
            first_step(v.verify_async(good, issuer="https://other.example"))
        with pytest.raises(TypeError):
            first_step(v.verify_async(123))  # type: ignore[arg-type]
        assert iss.stats()["jwks_requests"] == fetches


def test_a_miss_runs_in_jwtwardens_threads_and_matches_verify(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint(sub="bob")
    threads: list[str] = []
    real = verifier.verify_full

    async def main() -> tuple[Any, Any, Any]:
        loop_thread = threading.current_thread().name
        first = await verifier.verify_full_async(token)
        again = await verifier.verify_full_async(token)
        claims = await verifier.verify_async(token)
        threads.append(loop_thread)
        return first, again, claims

    first, again, claims = asyncio.run(main())
    assert first.cached is False and again.cached is True
    assert claims == real(token).claims
    bad = issuer.mint(aud="other")  # a signature check, then a policy refusal
    with pytest.raises(jwtwarden.InvalidAudienceError):
        asyncio.run(verifier.verify_async(bad))

    # Only what needs a signature check went to the pool.
    seen: list[str] = []
    original = _aio._in_thread

    async def spy(fn: Callable[[], Any]) -> Any:
        seen.append("pool")

        def in_worker() -> Any:
            seen.append(threading.current_thread().name)
            return fn()

        return await original(in_worker)

    mp = pytest.MonkeyPatch()
    mp.setattr(_aio, "_in_thread", spy)
    try:
        fresh = issuer.mint()

        async def twice() -> None:
            await verifier.verify_async(fresh)  # a miss: pool
            await verifier.verify_async(fresh)  # a hit: inline
            await verifier.verify_async(fresh, fresh=True)  # fresh: a signature check, pool

        asyncio.run(twice())
    finally:
        mp.undo()
    assert seen[0::2] == ["pool", "pool"]
    assert all(name.startswith("jwtwarden-verify") for name in seen[1::2]), seen


def test_the_event_loop_keeps_running_while_a_fetch_hangs(new_issuer: Callable[..., Issuer]) -> None:
    """Adversarial: new kids arrive while the fetch that may publish them is
    in flight (slow). None is refused before that fetch ends, none blocks
    the loop, and the one whose key is published verifies."""
    iss = new_issuer("RS256")
    with jwtwarden.Verifier(iss.config()) as v:
        new_kid = iss.add_key("RS256")
        token = iss.mint(new_kid)
        iss.fault("delay", delay_ms=1500)
        others = [with_kid(token, f"other-{i}") for i in range(20)]
        ticks = 0

        async def main() -> list[Any]:
            nonlocal ticks
            tasks = [asyncio.ensure_future(v.verify_async(token))]
            await asyncio.sleep(0.05)  # the first call leads the fetch
            tasks += [asyncio.ensure_future(v.verify_async(t)) for t in others]
            while not all(t.done() for t in tasks):
                ticks += 1
                await asyncio.sleep(0.01)
            return [t.exception() or t.result() for t in tasks]

        results = asyncio.run(main())
        assert results[0]["sub"] == "user"
        assert all(isinstance(r, jwtwarden.UnknownKidError) for r in results[1:]), results
        assert ticks > 5, "the event loop was blocked"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_pool(issuer: Issuer, verifier: jwtwarden.Verifier) -> None:
    token = issuer.mint()
    asyncio.run(verifier.verify_async(token, fresh=True))  # the parent's pool exists now
    assert _aio._pool is not None
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = b"0"
        try:
            claims = asyncio.run(asyncio.wait_for(verifier.verify_async(token, fresh=True), 30))
            ok = b"1" if claims["sub"] == "user" else b"2"
        finally:
            os.write(w, ok)
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"1"

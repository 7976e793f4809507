"""The asyncio entry points, ``Verifier.verify_async`` and
``Verifier.verify_full_async``: an event loop never waits on a signature
check or a JWKS fetch.

The engine first answers, on the loop and with the GIL held, everything it
decides without a signature check or a network wait
(``Verifier::verify_without_waiting`` in the core: cache hits, malformed
tokens, unknown issuers, disallowed algorithms, revoked ``kid``\\ s, unknown
``kid``\\ s it remembers or may not fetch for yet). That takes microseconds:
a hit about as long as ``verify``, with no thread hop. Only the rest, which
checks a signature (tens of microseconds) or may wait for a JWKS fetch (up
to ``http.timeout_ms``), runs in a worker thread.

**The thread pool is jwtwarden's own**, one per process, created on first
use (and again in a forked child): ``min(32, os.cpu_count() + 4)`` threads,
the size of asyncio's default executor. Not the default executor, because
that one is shared: asyncio resolves host names in it
(``loop.getaddrinfo``), and applications send their blocking work there
(``asyncio.to_thread``, ``run_in_executor(None, ...)``). While an issuer's
JWKS endpoint hangs, every verification that needs its keys waits up to
``http.timeout_ms``; in a shared pool those waits would hold the threads
the application's DNS lookups and file reads need, and a busy application
pool would delay every token check. A separate pool keeps each from
starving the other; its size is enough for the work it gets, since a
signature check releases the GIL and keeps one core busy, and fetches are
coalesced (one in flight per issuer) and bounded by ``http.timeout_ms``.

Under an event loop that is not asyncio (trio through anyio), the rest runs
in ``anyio.to_thread.run_sync`` instead.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

from ._native import Verifier

__all__: list[str] = []

_pool: Optional[ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            pool = _pool
            if pool is None:
                pool = ThreadPoolExecutor(
                    max_workers=min(32, (os.cpu_count() or 1) + 4),
                    thread_name_prefix="jwtwarden-verify",
                )
                _pool = pool
    return pool


def _forget_pool_after_fork() -> None:
    # The parent's worker threads do not exist in the child: a pool that
    # believes they do would queue work nobody runs.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


async def _in_thread(fn: Callable[[], Any]) -> Any:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        # Not asyncio (trio through anyio): that library's worker threads.
        import anyio.to_thread

        return await anyio.to_thread.run_sync(fn)
    return await loop.run_in_executor(_executor(), fn)


async def verify(verifier: Verifier, token: Any, issuer: Optional[str], fresh: bool, full: bool) -> Any:
    """``verifier.verify`` (``verify_full`` if ``full``) for an event loop:
    inline when the engine decides without waiting, else in a worker thread."""
    decided = verifier._verify_without_waiting(token, issuer, fresh, full)
    if decided is not None:
        return decided
    call = verifier.verify_full if full else verifier.verify
    return await _in_thread(functools.partial(call, token, issuer=issuer, fresh=fresh))

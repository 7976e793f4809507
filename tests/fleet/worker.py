"""Fleet worker (Python front end): one Verifier, driven by a line protocol.

    python worker.py CONFIG [--fork [--prewarm TOKEN]]

Prints ``ready <pid>`` once its Verifier exists, then answers one line per
command read from stdin (the protocol every worker speaks, see README.md):

    verify <token>          -> ok | err <kind>
    revoke <issuer> <jti>   -> <local|fleet|pending> <unix_ns when revoke_jti returned> | err <kind>
    watch <token>           -> revoked <unix_ns when first seen> | err <kind> <unix_ns> | timeout

``--fork`` is the pre-fork server case (gunicorn ``--preload``): the Verifier
is created (and, with ``--prewarm``, a token verified into its cache) in the
parent, which then forks; the CHILD is the worker and the parent only waits
for it. The child must receive revocations made after the fork.
"""

from __future__ import annotations

import os
import sys
import time

import jwtwarden

# How long `watch` waits for a revocation before answering `timeout`.
WATCH_LIMIT_S = 20.0
# Pause between two checks of `watch`: eight workers spinning flat out on two
# cores would measure CPU contention, not the feed; 1 ms is far below the
# 50 ms target.
WATCH_PAUSE_S = 0.001


def check(verifier: jwtwarden.Verifier, token: str) -> str:
    try:
        verifier.verify(token)
        return "ok"
    except jwtwarden.JwtWardenError as e:
        return f"err {e.kind}"


def watch(verifier: jwtwarden.Verifier, token: str) -> str:
    deadline = time.monotonic() + WATCH_LIMIT_S
    while time.monotonic() < deadline:
        result = check(verifier, token)
        if result != "ok":
            seen = time.time_ns()  # CLOCK_REALTIME, comparable across processes
            return f"revoked {seen}" if result == "err revoked" else f"{result} {seen}"
        time.sleep(WATCH_PAUSE_S)
    return "timeout"


def revoke(verifier: jwtwarden.Verifier, issuer: str, jti: str) -> str:
    try:
        propagation = verifier.revoke_jti(jti, issuer=issuer)
    except jwtwarden.JwtWardenError as e:
        return f"err {e.kind}"
    return f"{propagation.value} {time.time_ns()}"


def serve(verifier: jwtwarden.Verifier) -> None:
    print(f"ready {os.getpid()}", flush=True)
    for line in sys.stdin:
        cmd, _, rest = line.strip().partition(" ")
        if cmd == "verify":
            answer = check(verifier, rest)
        elif cmd == "watch":
            answer = watch(verifier, rest)
        elif cmd == "revoke":
            issuer, _, jti = rest.partition(" ")
            answer = revoke(verifier, issuer, jti)
        elif cmd == "quit":
            return
        else:
            answer = f"err unknown_command {cmd}"
        print(answer, flush=True)


def main() -> None:
    args = sys.argv[1:]
    verifier = jwtwarden.Verifier(args[0])
    if "--fork" not in args:
        serve(verifier)
        return
    if "--prewarm" in args:
        verifier.verify(args[args.index("--prewarm") + 1])
    pid = os.fork()
    if pid == 0:
        # The child: the same Verifier object, inherited, as under --preload.
        try:
            serve(verifier)
        finally:
            os._exit(0)
    # The parent keeps its own Verifier (and its feed thread) alive, like a
    # gunicorn arbiter, and leaves when the child does.
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 0)


if __name__ == "__main__":
    main()

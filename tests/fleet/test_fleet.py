"""Fleet revocation end to end (issue 10): eight real processes (Python, C,
Go, a forked Python child, `jwtwarden serve`) on one real redis-server.

    scripts/test-fleet                       # builds everything, then runs this
    target/py-venv/bin/python tests/fleet/test_fleet.py

Scenarios run in order on one fleet (each needs the one before: the
revocations made early are the ones the restarts must not lose). Prints
ok/FAIL per scenario, a propagation table, and writes the figures to
$FLEET_RESULTS (default target/fleet-results.json). Exit status 1 if any
scenario failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import Fleet, ServeWorker, Worker, propagation_round  # noqa: E402
from fleet import TARGET, cli_revocations, percentile, wait_for  # noqa: E402

RESULTS = Path(os.environ.get("FLEET_RESULTS", TARGET / "fleet-results.json"))
WORKDIR = Path(os.environ.get("FLEET_WORKDIR", TARGET / "fleet/work"))

# Revoked tokens, (token, jti), for the scenarios that come after.
revoked: list[tuple[str, str]] = []
rounds: list[dict[str, Any]] = []


def test_every_front_end_revokes_for_the_fleet(fleet: Fleet) -> None:
    """Each front end in turn revokes; every other process rejects it."""
    for i, revoker in enumerate(["py1", "c1", "go1", "cli"]):
        # Every other round is minted by PyJWT, an independent signer.
        r = propagation_round(fleet, revoker, pyjwt=(i % 2 == 0))
        rounds.append(r)
        revoked.append((r["token"], r["jti"]))
        worst = max(r["latency_ms"].items(), key=lambda kv: kv[1])
        print(f"     revoked by {revoker:<5} seen by {len(r['latency_ms'])} others, slowest {worst[0]} "
              f"{worst[1]:.1f} ms")


def test_sigkill_after_revoke_then_restart(fleet: Fleet) -> None:
    """SIGKILL right after revoke_jti answered; the journal (state_dir)
    alone rejects the token at restart, then so does the worker on the feed."""
    token, jti = fleet.mint()
    fleet.verify_all(token, "ok")
    py2 = fleet.workers["py2"]
    assert isinstance(py2, Worker)
    answer = py2.revoke(fleet.issuer.url, jti)
    py2.kill()
    assert answer.startswith("fleet "), answer
    revoked.append((token, jti))
    # Same state_dir, no feed: only the journal can know.
    alone = fleet.start("py2", feed=False)
    try:
        got = alone.verify(token)
        assert got == "err revoked", f"restarted on its journal alone: {got!r}"
    finally:
        alone.close()
    fleet.workers["py2"] = fleet.start("py2")
    fleet.verify_all(token, "err revoked")


def test_redis_restart_reseeded(fleet: Fleet) -> None:
    """Redis restarts empty; the processes re-seed it, and a process started
    afterwards with no state_dir rejects every earlier revocation."""
    fleet.redis.restart()
    want = {jti for _, jti in revoked}

    def reseeded() -> bool:
        held = {r["value"] for r in cli_revocations(fleet.cli.config) if r["kind"] == "jti"}
        return want <= held

    t0 = time.monotonic()
    wait_for("the fleet to re-seed Redis", reseeded, 20, pause=0.1)
    print(f"     Redis re-seeded with {len(want)} revocations in {time.monotonic() - t0:.1f} s")
    newcomer = fleet.start("newcomer", state=False)
    try:
        for token, jti in revoked:
            got = newcomer.verify(token)
            assert got == "err revoked", f"newcomer, jti {jti}: {got!r}"
        fresh, _ = fleet.mint(pyjwt=True)
        assert newcomer.verify(fresh) == "ok", "newcomer rejects a good token"
    finally:
        newcomer.close()


def test_pending_while_redis_down(fleet: Fleet) -> None:
    """Redis down: revoke answers pending; once Redis is back on the same
    port, every other process rejects the token."""
    token, jti = fleet.mint()
    fleet.verify_all(token, "ok")
    fleet.verify_all(token, "ok")
    fleet.redis.stop()
    try:
        answer = fleet.revoker("go1").revoke(fleet.issuer.url, jti)
        assert answer.startswith("pending "), f"go1 revoked while Redis was down: {answer!r}"
        cli = fleet.cli.revoke(fleet.issuer.url, "cli-" + jti)
        assert cli.startswith("pending "), f"jwtwarden revoke while Redis was down: {cli!r}"
    finally:
        fleet.redis.start()
    revoked.append((token, jti))
    back = time.monotonic()
    others = [n for n in fleet.workers if n != "go1"]
    for n in others:
        fleet.workers[n].start_watch(token)
    for n in others:
        got = fleet.workers[n].watch_result()
        assert got.startswith("revoked "), f"{n} after Redis came back: {got!r}"
    print(f"     all {len(others)} others rejected it {time.monotonic() - back:.1f} s after Redis came back")


def test_forked_child_first_call_after_revocation(fleet: Fleet) -> None:
    """gunicorn --preload: the parent caches a token and forks; the token is
    revoked elsewhere before the child's first call. That first call must
    reject it (the child's subscription starts on first use)."""
    token, jti = fleet.mint()
    child = fleet.start("pyfork-late", prewarm=token)  # the parent verified it, then forked
    try:
        answer = fleet.cli.revoke(fleet.issuer.url, jti)
        assert answer.startswith("fleet "), answer
        revoked.append((token, jti))
        # Everyone else has it; only then does the child make its first call.
        fleet.workers["c2"].start_watch(token)
        assert fleet.workers["c2"].watch_result().startswith("revoked ")
        first = child.verify(token)
        again = child.verify(token) if first == "ok" else first
        assert first == "err revoked", (
            f"the forked child's first call accepted a token revoked after the fork (first: {first!r}, "
            f"a moment later: {again!r})")
    finally:
        child.close()


def test_first_revoke_after_redis_restart(fleet: Fleet) -> None:
    """A process that published before Redis restarted revokes again once
    Redis is back and its subscription is in sync: the answer is fleet (Redis
    is up) and the others reject the token."""
    # py1 first publishes with Redis up, so it holds a publishing connection
    # (a second try if the first met a connection the earlier restarts killed).
    for _ in range(2):
        warm, warm_jti = fleet.mint()
        revoked.append((warm, warm_jti))
        if fleet.revoker("py1").revoke(fleet.issuer.url, warm_jti).startswith("fleet "):
            break
    fleet.redis.restart()
    wait_for("the fleet to re-seed Redis", lambda: warm_jti in {
        r["value"] for r in cli_revocations(fleet.cli.config)}, 20, pause=0.1)
    time.sleep(3.5)  # every subscription is back (reconnect backoff is at most 2 s x 1.5)
    token, jti = fleet.mint()
    fleet.verify_all(token, "ok")
    answer = fleet.revoker("py1").revoke(fleet.issuer.url, jti)
    revoked.append((token, jti))
    serve = fleet.workers["serve"]
    assert isinstance(serve, ServeWorker)
    serve.start_watch(token, limit_s=5)
    seen = serve.watch_result()
    assert answer.startswith("fleet ") and seen.startswith("revoked "), (
        f"py1 answered {answer.split()[0]!r} with Redis up; serve 5 s later: {seen.split()[0]!r}")


SCENARIOS: list[Callable[[Fleet], None]] = [
    test_every_front_end_revokes_for_the_fleet,
    test_forked_child_first_call_after_revocation,
    test_sigkill_after_revoke_then_restart,
    test_redis_restart_reseeded,
    test_pending_while_redis_down,
    test_first_revoke_after_redis_restart,
]


def summary() -> dict[str, Any]:
    pairs = [(r["revoker"], n, ms) for r in rounds for n, ms in r["latency_ms"].items()]
    values = sorted(ms for _, _, ms in pairs)
    stats = {"pairs": len(values), "p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
             "max_ms": values[-1] if values else float("nan")}
    print("\n  propagation (revoker returns -> receiver rejects), ms")
    receivers = sorted({n for _, n, _ in pairs})
    print("  " + f"{'revoker':<8}" + "".join(f"{n:>8}" for n in receivers))
    for r in rounds:
        print("  " + f"{r['revoker']:<8}" + "".join(
            f"{r['latency_ms'][n]:>8.1f}" if n in r["latency_ms"] else f"{'-':>8}" for n in receivers))
    print(f"\n  over {stats['pairs']} (revoker, receiver) pairs: p50 {stats['p50_ms']:.1f} ms, "
          f"p99 {stats['p99_ms']:.1f} ms, max {stats['max_ms']:.1f} ms")
    return {"propagation": stats,
            "pairs": [{"revoker": a, "receiver": b, "ms": round(ms, 3)} for a, b, ms in pairs]}


def main() -> int:
    started = time.monotonic()
    fleet = Fleet(WORKDIR)
    print(f"fleet: {', '.join(f'{n} (pid {w.pid})' for n, w in fleet.workers.items())}")
    print(f"       Redis {fleet.redis.url}, issuer {fleet.issuer.url}; logs in {WORKDIR}")
    outcomes: dict[str, str] = {}
    try:
        for scenario in SCENARIOS:
            t0 = time.monotonic()
            name = scenario.__name__
            try:
                scenario(fleet)
                outcomes[name] = "ok"
            except Exception:  # report it and go on: the later scenarios still tell something
                outcomes[name] = "FAIL"
                traceback.print_exc(file=sys.stdout)
            print(f"{outcomes[name]:<4} {name} ({time.monotonic() - t0:.1f} s)")
    finally:
        fleet.close()
    results = summary()
    results["scenarios"] = outcomes
    results["seconds"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    failed = sum(v == "FAIL" for v in outcomes.values())
    passed = sum(v == "ok" for v in outcomes.values())
    print(f"\nFleet tests: {passed} passed, {failed} failed ({results['seconds']} s); figures in {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

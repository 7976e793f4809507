"""Propagation benchmark (issue 10): N revocations spread over the revokers
(Python, C, Go, `jwtwarden revoke`), each watched by every other process of
the eight-process fleet of tests/fleet; reports p50/p99/max of "revoker's
call returned -> receiver rejects", on the wall clock, in ms.

    scripts/test-fleet                                   # builds the workers once
    target/py-venv/bin/python benches/fleet/propagation.py [N]   (default 200)

Target: p99 <= 50 ms on loopback. Writes $TARGET/fleet-bench.json. Uses the
binaries scripts/test-fleet built (FLEET_* to point elsewhere).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "fleet"))

from cluster import Fleet, propagation_round  # noqa: E402
from fleet import TARGET, percentile  # noqa: E402

REVOKERS = ["py1", "c1", "go1", "cli"]
TARGET_P99_MS = 50.0


def stats(values: list[float]) -> str:
    v = sorted(values)
    return (f"n={len(v):>5}  p50 {percentile(v, 50):6.2f}  p99 {percentile(v, 99):6.2f}  "
            f"max {v[-1]:7.2f}")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    fleet = Fleet(TARGET / "fleet" / "bench-work")
    samples: list[tuple[str, str, float]] = []
    started = time.monotonic()
    try:
        for i in range(n):
            r = propagation_round(fleet, REVOKERS[i % len(REVOKERS)], settle_s=0.05)
            samples += [(r["revoker"], rx, ms) for rx, ms in r["latency_ms"].items()]
    finally:
        fleet.close()
    took = time.monotonic() - started
    allv = [ms for _, _, ms in samples]
    print(f"command: {Path(sys.executable).name} benches/fleet/propagation.py {n}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {n} revocations "
          f"in {took:.0f} s")
    print("propagation (revoker returns -> receiver rejects), ms")
    print(f"  all pairs           {stats(allv)}")
    for rv in REVOKERS:
        print(f"  revoked by {rv:<8} {stats([ms for a, _, ms in samples if a == rv])}")
    for rx in sorted({b for _, b, _ in samples}):
        print(f"  seen by {rx:<11} {stats([ms for _, b, ms in samples if b == rx])}")
    p99 = percentile(sorted(allv), 99)
    verdict = "meets" if p99 <= TARGET_P99_MS else "MISSES"
    print(f"p99 {p99:.2f} ms {verdict} the target of {TARGET_P99_MS:.0f} ms")
    out = TARGET / "fleet-bench.json"
    out.write_text(json.dumps({
        "revocations": n, "pairs": len(allv), "seconds": round(took, 1),
        "p50_ms": percentile(sorted(allv), 50), "p99_ms": p99, "max_ms": max(allv),
        "samples": [{"revoker": a, "receiver": b, "ms": round(ms, 3)} for a, b, ms in samples],
    }, indent=1) + "\n")
    print(f"samples in {out}")
    return 0 if p99 <= TARGET_P99_MS else 1


if __name__ == "__main__":
    sys.exit(main())

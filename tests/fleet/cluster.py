"""The eight-process fleet on one Redis, and one propagation round on it:
shared by the tests (test_fleet.py) and the benchmark
(benches/fleet/propagation.py)."""

from __future__ import annotations

import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional, Union

from fleet import (CWORKER, GOWORKER, CliRevoker, Issuer, Redis, ServeWorker, Worker, new_jti,
                   python_worker, write_config)

AnyWorker = Union[Worker, ServeWorker]
AnyRevoker = Union[Worker, CliRevoker]

# Eight processes: name -> kind. "pyfork" is the forked child of a Python
# process that created its Verifier before forking (gunicorn --preload).
LAYOUT = {
    "py1": "python", "py2": "python", "c1": "c", "c2": "c",
    "go1": "go", "go2": "go", "serve": "serve", "pyfork": "python-fork",
}


class Fleet:
    def __init__(self, workdir: Path) -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        self.workdir = workdir
        self.redis = Redis(workdir)
        self.issuer = Issuer()
        # A prefix of its own, so nothing else on that Redis is read.
        self.prefix = f"jwtwarden:fleet-{uuid.uuid4().hex[:8]}:"
        self.workers: dict[str, AnyWorker] = {}
        with ThreadPoolExecutor(len(LAYOUT)) as pool:
            for name, w in zip(LAYOUT, pool.map(self.start, LAYOUT)):
                self.workers[name] = w
        self.cli = CliRevoker(self.config("cli"), workdir / "cli.log")

    def config(self, name: str, *, state: bool = True, feed: bool = True) -> Path:
        """The config file of process `name`: its own state_dir (unless
        state=False), on the fleet's Redis (unless feed=False)."""
        suffix = ("" if state else "-nostate") + ("" if feed else "-nofeed")
        return write_config(self.workdir / f"{name}{suffix}.json", self.issuer,
                            self.redis if feed else None,
                            self.workdir / "state" / name if state else None, self.prefix)

    def start(self, name: str, *, state: bool = True, feed: bool = True, prewarm: Optional[str] = None) -> AnyWorker:
        # Extra processes take the kind of their name's prefix ("pyfork-late").
        kind = LAYOUT.get(name) or ("python-fork" if name.startswith("pyfork") else "python")
        cfg = self.config(name, state=state, feed=feed)
        log = self.workdir / f"{name}.log"
        if kind == "c":
            return Worker(name, [CWORKER, str(cfg)], log)
        if kind == "go":
            return Worker(name, [GOWORKER, str(cfg)], log)
        if kind == "serve":
            return ServeWorker(name, cfg, log)
        if kind == "python-fork":
            return python_worker(name, cfg, log, "--fork", *(["--prewarm", prewarm] if prewarm else []))
        return python_worker(name, cfg, log)

    def revoker(self, name: str) -> AnyRevoker:
        if name == "cli":
            return self.cli
        w = self.workers[name]
        assert isinstance(w, Worker), f"{name} cannot revoke"
        return w

    def mint(self, pyjwt: bool = False) -> tuple[str, str]:
        jti = new_jti()
        return (self.issuer.mint_pyjwt(jti) if pyjwt else self.issuer.mint(jti)), jti

    def verify_all(self, token: str, expect: str, names: Optional[list[str]] = None) -> None:
        names = names or list(self.workers)
        with ThreadPoolExecutor(len(names)) as pool:
            got = dict(zip(names, pool.map(lambda n: self.workers[n].verify(token), names)))
        wrong = {n: r for n, r in got.items() if r != expect}
        assert not wrong, f"expected {expect!r} from every process, got {wrong}"

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
        self.issuer.close()
        self.redis.stop()


def propagation_round(fleet: Fleet, revoker_name: str, pyjwt: bool = False,
                      settle_s: float = 0.2) -> dict[str, Any]:
    """Mint a token, have all eight verify it (cached), set every process
    but the revoker watching it, revoke it, and check each one rejects it
    as revoked. Returns the token, its jti and, per receiver, the
    propagation in ms: first rejection seen minus the revoker's return, both
    on the wall clock."""
    token, jti = fleet.mint(pyjwt)
    fleet.verify_all(token, "ok")
    fleet.verify_all(token, "ok")  # now a cache hit everywhere
    receivers = [n for n in fleet.workers if n != revoker_name]
    for n in receivers:
        fleet.workers[n].start_watch(token)
    time.sleep(settle_s)  # the watchers are looping before the revocation
    answer = fleet.revoker(revoker_name).revoke(fleet.issuer.url, jti)
    propagation, _, returned = answer.partition(" ")
    assert propagation == "fleet", f"{revoker_name}: revoke answered {answer!r}, expected fleet"
    latencies: dict[str, float] = {}
    for n in receivers:
        result = fleet.workers[n].watch_result()
        assert result.startswith("revoked "), f"{n} (revoked by {revoker_name}): {result!r}"
        latencies[n] = (int(result.split()[1]) - int(returned)) / 1e6
    if revoker_name in fleet.workers:
        got = fleet.workers[revoker_name].verify(token)
        assert got == "err revoked", f"{revoker_name} itself: {got!r}"
    return {"revoker": revoker_name, "token": token, "jti": jti, "latency_ms": latencies}

"""The verifier keeps working in a child after fork(): os.fork and
multiprocessing's fork start method, with a kid the parent never saw."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any, Callable

import pytest

import jwtwarden
from conftest import Issuer

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # Python 3.12+ warns that forking a process with threads (here: the
    # engine's refresher) may deadlock the child. The engine is built for
    # exactly this (it respawns what the child lost); the warning is expected.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def verify_in_child(v: jwtwarden.Verifier, token: str) -> dict[str, Any]:
    """What a forked child does: verify, then report what it saw."""
    handler = Collect()
    logger = logging.getLogger("jwtwarden")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    jwtwarden.sync_log_level()
    try:
        result = v.verify_full(token)
        return {
            "pid": os.getpid(),
            "sub": result.claims["sub"],
            "kid": result.kid,
            "cached": result.cached,
            "unknown_kid_fetches": v.metrics()["issuers"][0]["fetches"]["unknown_kid"],
            "logs": handler.messages,
        }
    except Exception as e:  # noqa: BLE001 - reported to the parent
        return {"error": f"{type(e).__name__}: {e}"}


def child_main(v: jwtwarden.Verifier, token: str, conn: Connection) -> None:
    conn.send(verify_in_child(v, token))
    conn.close()


@pytest.fixture
def setup(new_issuer: Callable[..., Issuer]) -> Any:
    iss = new_issuer("RS256")
    v = jwtwarden.Verifier(iss.config())
    v.verify(iss.mint())  # the parent is warm: keys loaded, refresher running
    yield iss, v
    v.close()
    logging.getLogger("jwtwarden").setLevel(logging.NOTSET)
    jwtwarden.sync_log_level()


def check(report: dict[str, Any], new_kid: str) -> None:
    assert "error" not in report, report["error"]
    assert report["pid"] != os.getpid()
    assert report["sub"] == "user"
    assert report["kid"] == new_kid
    assert not report["cached"]
    assert report["unknown_kid_fetches"] == 1
    assert any("refresher restarted after fork" in m for m in report["logs"]), report["logs"]


def test_os_fork(setup: Any) -> None:
    iss, v = setup
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            with os.fdopen(to_child_r) as inp:
                token = inp.read()
            report = verify_in_child(v, token)
            with os.fdopen(to_parent_w, "w") as out:
                json.dump(report, out)
            code = 0
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    # The key appears only after the fork: the parent never saw it.
    new_kid = iss.add_key("ES256")
    with os.fdopen(to_child_w, "w") as out:
        out.write(iss.mint(new_kid))
    with os.fdopen(to_parent_r) as inp:
        report = json.load(inp)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    check(report, new_kid)
    # The parent is unaffected, and learns the key itself.
    assert v.metrics()["issuers"][0]["fetches"]["unknown_kid"] == 0
    assert v.verify(iss.mint(new_kid))["sub"] == "user"


def multiprocessing_child(v: jwtwarden.Verifier, conn: Connection) -> None:
    token = conn.recv()
    conn.send(verify_in_child(v, token))
    conn.close()


def test_multiprocessing_fork(setup: Any) -> None:
    iss, v = setup
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe()
    proc = ctx.Process(target=multiprocessing_child, args=(v, child_end))
    proc.start()
    try:
        new_kid = iss.add_key("EdDSA")
        parent_end.send(iss.mint(new_kid))
        assert parent_end.poll(60), "no answer from the child"
        report = parent_end.recv()
    finally:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == 0
    check(report, new_kid)


def test_fork_with_the_refresher_busy(setup: Any) -> None:
    """A fork while the parent's refresher is in the middle of a slow fetch."""
    iss, v = setup
    iss.fault("delay", delay_ms=1500)
    fetch = threading.Thread(target=v.refresh_issuer, args=(iss.url,))
    fetch.start()
    try:
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=multiprocessing_child, args=(v, child_end))
        proc.start()
        iss.fault("none")
        new_kid = iss.add_key("RS256")
        parent_end.send(iss.mint(new_kid))
        assert parent_end.poll(60), "no answer from the child"
        report = parent_end.recv()
        proc.join(60)
        assert proc.exitcode == 0
        assert "error" not in report, report
        assert report["kid"] == new_kid
    finally:
        if proc.is_alive():
            proc.kill()
        fetch.join()


def child_waits_for_refresher_logs(v: jwtwarden.Verifier, token: str, conn: Connection) -> None:
    handler = Collect()
    logger = logging.getLogger("jwtwarden")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    jwtwarden.sync_log_level()
    v.verify(token)  # respawns the refresher in this process
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("(scheduled)" in m for m in handler.messages):
        time.sleep(0.05)
    conn.send(handler.messages)
    conn.close()


def test_forked_child_forwards_its_refreshers_logs(new_issuer: Callable[..., Issuer]) -> None:
    iss = new_issuer("RS256")
    iss.headers(cache_control=None)
    with jwtwarden.Verifier(iss.config(refresh={"default_ttl_secs": 1, "min_ttl_secs": 1})) as v:
        token = iss.mint()
        v.verify(token)
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=child_waits_for_refresher_logs, args=(v, token, child_end))
        proc.start()
        try:
            assert parent_end.poll(60), "no answer from the child"
            messages = parent_end.recv()
        finally:
            proc.join(60)
            if proc.is_alive():
                proc.kill()
        assert proc.exitcode == 0
        assert any("(scheduled)" in m for m in messages), messages
    logging.getLogger("jwtwarden").setLevel(logging.NOTSET)
    jwtwarden.sync_log_level()

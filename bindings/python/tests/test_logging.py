"""Engine log records reach `logging` under "jwtwarden", never with a token
in them, from calling threads and the background refresher alike, and the
bridge does not hang interpreter shutdown."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Callable

import pytest

import jwtwarden
from conftest import Issuer, tamper_payload, wait_for


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG, logger="jwtwarden")
    jwtwarden.sync_log_level()
    yield caplog
    logging.getLogger("jwtwarden").setLevel(logging.NOTSET)
    jwtwarden.sync_log_level()


def test_records_from_the_calling_thread(issuer: Issuer, debug_logs: pytest.LogCaptureFixture) -> None:
    with jwtwarden.Verifier(issuer.config()) as v:
        startup = [r for r in debug_logs.records if r.name == "jwtwarden.issuer"]
        assert startup and startup[0].levelno == logging.INFO
        assert issuer.url in startup[0].getMessage()
        assert startup[0].pathname.endswith("issuer.rs")

        token = tamper_payload(issuer.mint(), sub="admin")
        debug_logs.clear()
        with pytest.raises(jwtwarden.InvalidSignatureError):
            v.verify(token)
        # Emitted synchronously, by this thread, before verify returned.
        (record,) = [r for r in debug_logs.records if r.name == "jwtwarden.verifier"]
        assert record.levelno == logging.DEBUG
        assert "rejected token" in record.getMessage()
        for part in token.split("."):
            assert part not in record.getMessage()


def test_no_records_below_the_level(issuer: Issuer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="jwtwarden")
    jwtwarden.sync_log_level()
    with jwtwarden.Verifier(issuer.config()) as v:
        with pytest.raises(jwtwarden.InvalidSegmentsError):
            v.verify("x.y")
    assert [r for r in caplog.records if r.name.startswith("jwtwarden")] == []


def test_records_from_the_refresher_thread(
    new_issuer: Callable[..., Issuer], debug_logs: pytest.LogCaptureFixture
) -> None:
    iss = new_issuer("RS256")
    iss.headers(cache_control=None)
    config = iss.config(refresh={"default_ttl_secs": 1, "min_ttl_secs": 1})
    with jwtwarden.Verifier(config):
        wait_for(
            lambda: any("(scheduled)" in r.getMessage() for r in debug_logs.records),
            "a log record of a scheduled refresh",
        )


SHUTDOWN_SCRIPT = textwrap.dedent(
    """
    import json, logging, subprocess, sys, threading, time
    import jwtwarden

    class Slow(logging.StreamHandler):
        # Sleeping releases the GIL: a thread in here when the interpreter
        # shuts down is stopped as it takes the GIL back.
        def emit(self, record):
            time.sleep(0.001)
            super().emit(record)

    logging.basicConfig(level=logging.DEBUG, handlers=[Slow(sys.stdout)])
    url, jwks_uri = sys.argv[1], sys.argv[2]
    config = {
        "issuers": [{"issuer": url, "jwks_uri": jwks_uri, "audiences": ["api"],
                     "refresh": {"default_ttl_secs": 1, "min_ttl_secs": 1}}],
        "http": {"allow_http": True},
    }
    v = jwtwarden.Verifier(config)

    def spin():
        while True:
            try:
                v.verify("x.y.z")
            except jwtwarden.JwtWardenError:
                pass
            time.sleep(0.001)

    # Daemon threads still calling into the engine (and logging each
    # rejection), the refresher logging every second, and a verifier still
    # open at exit.
    for _ in range(3):
        threading.Thread(target=spin, daemon=True).start()
    time.sleep(float(sys.argv[3]))
    print("exiting", flush=True)
    """
)


@pytest.mark.parametrize("linger", [0.0, 1.5])
def test_interpreter_exit_does_not_hang(new_issuer: Callable[..., Issuer], linger: float) -> None:
    iss = new_issuer("RS256")
    iss.headers(cache_control=None)
    env = dict(os.environ, PYTHONWARNINGS="error")
    done = subprocess.run(
        [sys.executable, "-c", SHUTDOWN_SCRIPT, iss.url, iss.jwks_uri, str(linger)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting" in done.stdout

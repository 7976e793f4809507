"""The pieces of a test fleet: a real redis-server, the test issuer, and the
workers (Python, C, Go, the forked Python child, `jwtwarden serve`) that
every scenario of test_fleet.py and benches/fleet/propagation.py drives.

Binaries come from the environment scripts/test-fleet sets (FLEET_*); the
Python workers run under this interpreter (the venv with the wheel).
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TARGET = Path(os.environ.get("FLEET_TARGET", ROOT / "target"))
TESTISSUER = os.environ.get("FLEET_TESTISSUER", str(TARGET / "release/jwtwarden-testissuer"))
CLI = os.environ.get("FLEET_CLI", str(TARGET / "debug/jwtwarden"))
CWORKER = os.environ.get("FLEET_CWORKER", str(TARGET / "fleet/cworker"))
GOWORKER = os.environ.get("FLEET_GOWORKER", str(TARGET / "fleet/goworker"))
REDIS_SERVER = os.environ.get("FLEET_REDIS_SERVER", "redis-server")

# How long an answer may take: `watch` gives up after 20 s, so a little more.
ANSWER_TIMEOUT_S = 25.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, cond: Callable[[], bool], timeout: float, pause: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)


class Redis:
    """redis-server on a fixed loopback port, without persistence, so a
    restart loses every key (like a Redis that crashed)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        assert self.proc is None
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for("redis-server to answer PING", self.ping, 10)

    def stop(self) -> None:
        """SIGKILL: the clients see the connection drop, nothing is saved."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
        wait_for("the redis port to close", lambda: not self.ping(), 5)

    def restart(self) -> None:
        self.stop()
        self.start()


class Issuer:
    """jwtwarden-testissuer: serves the JWKS; its admin API mints tokens and
    hands out the private key, so PyJWT can mint independently too."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([TESTISSUER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        banner = json.loads(self.proc.stdout.readline())
        self.url: str = banner["url"]
        self.jwks_uri: str = banner["jwks_uri"]
        self.kid: str = banner["kid"]
        self._pem: Optional[str] = None

    def _admin(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + "/admin/" + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def claims(self, jti: str) -> dict[str, Any]:
        now = int(time.time())
        return {"iss": self.url, "aud": "api", "sub": "fleet-user", "iat": now, "nbf": now,
                "exp": now + 3600, "jti": jti}

    def mint(self, jti: str) -> str:
        """A token signed by the issuer itself (its admin API)."""
        return str(self._admin("POST", "mint", {"kid": self.kid, "claims": self.claims(jti)})["token"])

    def mint_pyjwt(self, jti: str) -> str:
        """A token signed by PyJWT, an independent library, with the issuer's
        published key (its PEM from the admin API)."""
        import jwt  # PyJWT, in the test venv

        if self._pem is None:
            self._pem = str(self._admin("GET", f"keys/{self.kid}/private")["pem"])
        return jwt.encode(self.claims(jti), self._pem, algorithm="RS256", headers={"kid": self.kid})

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the issuer exits at stdin EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def new_jti() -> str:
    return "fleet-" + uuid.uuid4().hex


def write_config(path: Path, issuer: Issuer, redis: Optional[Redis], state_dir: Optional[Path],
                 prefix: str) -> Path:
    cfg: dict[str, Any] = {
        "issuers": [{"issuer": issuer.url, "jwks_uri": issuer.jwks_uri, "audiences": ["api"]}],
        "http": {"allow_http": True},
    }
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        cfg["state_dir"] = str(state_dir)
    if redis is not None:
        cfg["revocation"] = {"redis": {"url": redis.url, "key_prefix": prefix, "max_stale_secs": 60,
                                       "timeout_ms": 2000}}
    path.write_text(json.dumps(cfg, indent=2))
    return path


class Worker:
    """A worker process speaking the line protocol (README.md) on its
    stdin/stdout. A reader thread queues its answers, so many workers can be
    asked at once and their answers collected afterwards."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "ab"), text=True, bufsize=1)
        self.answers: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.recv(60)
        assert ready.startswith("ready "), f"{name}: expected 'ready <pid>', got {ready!r}"
        # The process that answers: for the forked worker, the child.
        self.pid = int(ready.split()[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.answers.put(line.rstrip("\n"))
        self.answers.put(None)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float = ANSWER_TIMEOUT_S) -> str:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"{self.name}: no answer within {timeout:.0f} s") from None
        if answer is None:
            raise AssertionError(f"{self.name}: exited ({self.proc.poll()}); stderr in {self.log}")
        return answer

    def ask(self, line: str) -> str:
        self.send(line)
        return self.recv()

    # The same verbs as ServeWorker, so scenarios treat every worker alike.
    def verify(self, token: str) -> str:
        return self.ask(f"verify {token}")

    def revoke(self, issuer: str, jti: str) -> str:
        return self.ask(f"revoke {issuer} {jti}")

    def start_watch(self, token: str) -> None:
        self.send(f"watch {token}")

    def watch_result(self) -> str:
        return self.recv()

    def kill(self) -> None:
        """SIGKILL the answering process (and, for the forked worker, its parent)."""
        for pid in {self.pid, self.proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()


class ServeWorker:
    """`jwtwarden serve`, asked over HTTP: GET /auth with the bearer token
    answers 200, or 401 with error_description="<kind>". The orchestrator
    does the watching, polling it from a thread."""

    def __init__(self, name: str, config: Path, log: Path) -> None:
        self.name = name
        self.proc = subprocess.Popen([CLI, "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=open(log, "ab"), text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it listens
        assert line, f"{name}: jwtwarden serve exited ({self.proc.wait()}); stderr in {log}"
        host, port = json.loads(line)["listen"].rsplit(":", 1)
        self.addr = (host, int(port))
        self.pid = self.proc.pid
        self._watch: "queue.Queue[str]" = queue.Queue()

    def verify(self, token: str) -> str:
        conn = http.client.HTTPConnection(*self.addr, timeout=10)
        try:
            conn.request("GET", "/auth", headers={"Authorization": f"Bearer {token}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return "ok"
            challenge = resp.getheader("WWW-Authenticate") or ""
            kind = challenge.split('error_description="', 1)[-1].split('"', 1)[0] if "error_description" in challenge else str(resp.status)
            return f"err {kind}"
        finally:
            conn.close()

    def start_watch(self, token: str, limit_s: float = 20) -> None:
        def poll() -> None:
            deadline = time.monotonic() + limit_s
            while time.monotonic() < deadline:
                result = self.verify(token)
                if result != "ok":
                    seen = time.time_ns()
                    self._watch.put(f"revoked {seen}" if result == "err revoked" else f"{result} {seen}")
                    return
                time.sleep(0.001)
            self._watch.put("timeout")

        threading.Thread(target=poll, daemon=True).start()

    def watch_result(self) -> str:
        try:
            return self._watch.get(timeout=ANSWER_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"{self.name}: watch gave no answer") from None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    kill = close


class CliRevoker:
    """`jwtwarden revoke` as a revoker: a fresh process per revocation, as an
    incident responder would run it. It returns when it prints its line."""

    name = "cli"

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log

    def revoke(self, issuer: str, jti: str) -> str:
        proc = subprocess.Popen([CLI, "revoke", "--config", str(self.config), "--issuer", issuer, "--jti", jti],
                                stdout=subprocess.PIPE, stderr=open(self.log, "ab"), text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        returned = time.time_ns()
        proc.wait()
        out = json.loads(line)
        if not out.get("ok"):
            return f"err {out.get('error')}"
        return f"{out['propagation']} {returned}"


def cli_revocations(config: Path) -> list[dict[str, Any]]:
    """What `jwtwarden revocations` says the fleet holds ([] if Redis is not answering)."""
    out = subprocess.run([CLI, "revocations", "--config", str(config)], capture_output=True, text=True)
    if out.returncode != 0:
        return []
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def python_worker(name: str, config: Path, log: Path, *extra: str) -> Worker:
    return Worker(name, [sys.executable, str(HERE / "worker.py"), str(config), *extra], log)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), int(-(-p * len(sorted_values) // 100))))
    return sorted_values[rank - 1]

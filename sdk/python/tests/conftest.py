"""The real `flagstaff` binary on a free loopback port with a temporary data dir, an admin made
through its CLI, a project imported and a server key made through its API — as the Rust SDK's
tests (tests/it/sdk_rust.rs) do.

Waits here are how long a test waits for something that must happen, never a measure of speed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("FLAGSTAFF_BIN") or ROOT / "target/debug/flagstaff")

#: How long a test waits for something that must happen (generous: the machine is shared).
PATIENCE = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def flagstaff_env(data_dir: Path) -> Dict[str, str]:
    """The environment without FLAGSTAFF_* from the machine running the tests."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGSTAFF_")}
    env.update(FLAGSTAFF_DATA_DIR=str(data_dir), NO_COLOR="1")
    return env


def eventually(what: str, done: Callable[[], Any], patience: float = PATIENCE) -> Any:
    deadline = time.monotonic() + patience
    while True:
        value = done()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


class Server:
    """A `flagstaff serve` child process on a fixed loopback port and data dir."""

    def __init__(self, data_dir: Path, port: int, env: Dict[str, str]):
        self.dir = data_dir
        self.port = port
        self.env = env
        self.url = f"http://127.0.0.1:{port}"
        self.process: Optional[subprocess.Popen] = None
        self.restart()

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def restart(self) -> None:
        assert self.process is None, "the server is running"
        assert BIN.exists(), f"no server binary at {BIN}: cargo build --bin flagstaff"
        env = flagstaff_env(self.dir)
        env.update(FLAGSTAFF_LOG="warn", **self.env)
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(
                [str(BIN), "serve", "--bind", f"127.0.0.1:{self.port}"],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        deadline = time.monotonic() + PATIENCE
        while True:
            if process.poll() is not None:
                raise AssertionError(f"flagstaff serve exited with {process.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"flagstaff serve did not answer /healthz: {self.log()}"
            time.sleep(0.02)
        self.process = process

    def kill(self) -> None:
        """Kills the process (SIGKILL, by its PID) and reaps it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


class Setup:
    """A data dir with an admin, a running server, a project imported and a server key."""

    def __init__(self, data_dir: Path, document: Dict[str, Any], env: Optional[Dict[str, str]] = None):
        self.dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(BIN), "user", "create", "--email", "sdk@example.test", "--role", "admin", "--password-stdin"],
            input=b"correct horse battery staple\n", env=flagstaff_env(data_dir), check=True, capture_output=True,
        )
        out = subprocess.run(
            [str(BIN), "token", "create", "--email", "sdk@example.test", "--name", "python-sdk-tests"],
            env=flagstaff_env(data_dir), check=True, capture_output=True,
        )
        self.admin = out.stdout.decode().strip()
        self.server = Server(data_dir, free_port(), env or {})
        status, body = self.api("POST", "/api/v1/import", document)
        assert 200 <= status < 300, f"import: {status} {body}"
        self.key = self.new_key("server")

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, body: Any = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Authorization": f"Bearer {self.admin}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=PATIENCE) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def new_key(self, kind: str) -> str:
        status, body = self.api(
            "POST", "/api/v1/projects/shop/environments/production/keys",
            {"kind": kind, "name": f"python sdk tests {kind}"},
        )
        assert status == 201, f"key: {body}"
        return body["key"]

    def toggle(self, flag: str, enabled: bool) -> None:
        status, body = self.api(
            "PATCH", f"/api/v1/projects/shop/flags/{flag}/environments/production", {"enabled": enabled}
        )
        assert status == 200, f"toggle {flag}: {body}"

    def client(self, **options: Any):
        """A client of this server and key, with delays short enough for tests."""
        import flagstaff

        options.setdefault("reconnect_backoff", (0.05, 0.4))
        options.setdefault("send_events", False)
        return flagstaff.Client(self.url, self.key, **options)

    @property
    def cache_path(self) -> str:
        return str(self.dir / "sdk-cache.json")

    def evaluation_counts(self) -> List[tuple]:
        """(flag, variant, count) summed over hours, from whichever database file holds them."""
        for path in sorted(self.dir.rglob("*.db")):
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                return conn.execute(
                    "SELECT flag_key, variant, sum(count) FROM evaluation_counts GROUP BY 1, 2 ORDER BY 1, 2"
                ).fetchall()
            except sqlite3.OperationalError:
                continue
            finally:
                conn.close()
        return []


def document() -> Dict[str, Any]:
    """The SDK suites' shop (the Rust SDK's tests read the same file), hostile strings included."""
    return json.loads((ROOT / "tests/fixtures/sdk-shop.json").read_text(encoding="utf-8"))


@pytest.fixture
def make_setup(tmp_path: Path):
    made: List[Setup] = []

    def make(doc: Optional[Dict[str, Any]] = None, env: Optional[Dict[str, str]] = None) -> Setup:
        setup = Setup(tmp_path / f"data{len(made)}", doc or document(), env)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        setup.server.kill()


class BlackHole:
    """Accepts connections and never answers (a stream path blocked by a proxy, say)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = "http://127.0.0.1:%d" % self.listener.getsockname()[1]
        self.held: List[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.held:
            conn.close()

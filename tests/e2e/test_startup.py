"""Start-up as a client sees it: the daemon listens at once, /healthz answers, /readyz and the API
say 503 until migrations and reconciliation are done (DESIGN "HTTP API"); a failed start-up exits
non-zero and says why."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mkd.testing.daemon_process import free_port
from tests.cli.conftest import REPO, clean_env


def serve(state_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "mkd.cli.main", "serve", "--state-dir", str(state_dir),
                                 "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT,
                                cwd=REPO, env=clean_env())


def wait_for(url: str, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mkd exited"
        try:
            return httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def test_readyz_is_503_while_start_up_waits_then_200(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    # Hold the (new, rollback-journal) database exclusively: the migrations wait on it, as they
    # would on a slow disk or a long reconciliation.
    holder = sqlite3.connect(state / "mkd.sqlite3", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    port = free_port()
    proc = serve(state, port, tmp_path / "mkd.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert wait_for(base + "/healthz", proc).status_code == 200
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json()["reason"].startswith("starting"), ready.text
        api = httpx.get(base + "/v1/instances")
        assert api.status_code == 503 and api.headers["content-type"] == "application/problem+json"
        assert api.headers["retry-after"] == "1"
        holder.execute("COMMIT")
        holder.close()
        deadline = time.monotonic() + 20
        while (ready := httpx.get(base + "/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.05)
        assert httpx.get(base + "/v1/instances").json()["items"] == []
        assert "mkd: ready: simulated backend, tree kernel" in (tmp_path / "mkd.log").read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_failed_start_up_exits_1_and_says_why(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "mkd.sqlite3").write_bytes(b"this is not an SQLite database" * 100)
    log = tmp_path / "mkd.log"
    proc = serve(state, free_port(), log)
    assert proc.wait(30) == 1
    assert "mkd: start-up failed:" in log.read_text() and "not a database" in log.read_text()

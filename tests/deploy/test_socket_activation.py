"""`mkd serve` under socket activation (deploy/mkd.socket), started by Debian's systemd-socket-activate:
the daemon starts on the first connection and serves on the sockets it was passed."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mkd.cli.serve import UnsafeBind, check_inherited
from mkd.cli.socket_activation import inherited_sockets
from mkd.config import load_settings
from mkd.testing.daemon_process import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def activated(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path, Path]]:
    tool = shutil.which("systemd-socket-activate")
    assert tool, "systemd-socket-activate is missing: `make test` installs Debian's systemd"
    port = free_port()
    unix = tmp_path / "run" / "mkd.sock"
    unix.parent.mkdir()
    state = tmp_path / "state"
    log = tmp_path / "activate.log"
    # systemd-socket-activate gives the command a fresh environment: only LISTEN_* and what -E names.
    cmd = [tool, "-l", f"127.0.0.1:{port}", "-l", str(unix), "-E", "MKD_SIMULATOR__KERNEL_PROFILE=tree",
           sys.executable, "-m", "mkd.cli.main", "serve", "--state-dir", str(state)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    try:
        deadline = time.monotonic() + 15
        while not unix.exists():  # listening is the tool's job; the daemon is not started yet
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc, f"http://127.0.0.1:{port}", unix, state
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_the_first_connection_starts_the_daemon_on_the_passed_sockets(
        activated: tuple[subprocess.Popen[str], str, Path, Path], tmp_path: Path) -> None:
    proc, url, unix, state = activated
    assert not state.exists()  # nothing started before a client came
    with httpx.Client(base_url=url, timeout=60) as http:
        deadline = time.monotonic() + 60
        while (ready := http.get("/readyz")).status_code != 200:  # 503 while start-up runs
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.1)
        assert http.get("/v1/host").json()["kernel_profile"] == "tree"
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(unix)), base_url="http://localhost") as local:
        assert local.get("/healthz").json() == {"status": "ok"}
        assert local.get("/v1/instances").json()["items"] == []
    assert not (state / "mkd.sock").exists()  # it bound none of its own
    log = (tmp_path / "activate.log").read_text()
    assert f"mkd: dashboard and API at {url}/" in log and f"mkd: dashboard and API at unix:{unix}" in log
    assert proc.poll() is None


def test_without_listen_pid_for_this_process_nothing_is_inherited() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert inherited_sockets(env) == []
    assert env == {}  # read once, then removed so children (dtc) do not take them
    assert inherited_sockets({"LISTEN_FDS": "1"}) == []


def test_a_passed_socket_beyond_loopback_needs_a_tokens_file(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"daemon.state_dir": tmp_path})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unbound:  # 0.0.0.0: not loopback, never bound
        with pytest.raises(UnsafeBind, match="needs a tokens file"):
            check_inherited(settings, [unbound])
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as local:
        check_inherited(settings, [local])  # a unix socket is guarded by its file mode

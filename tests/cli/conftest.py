"""Fixtures for the CLI tests: a real daemon process, and ways to run `mkd` against it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from httpx_sse import connect_sse
from typer.testing import CliRunner

from mkd.cli.main import app
from mkd.testing.daemon_process import DaemonProcess, free_port
from mkd.testing.netns import NetworkNamespace
from tests.helpers import POOL

REPO = Path(__file__).resolve().parents[2]

RunCli = Callable[..., Result]


@dataclass(frozen=True)
class Finished:
    """A finished `python -m mkd.cli.main` subprocess."""

    code: int
    stdout: str
    stderr: str


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without MKD_ variables that would redirect the CLI or the daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MKD_")}
    env.update(extra)
    return env


def run_mkd(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Finished:
    """`mkd ARGS` as a real process, the way an operator runs it."""
    done = subprocess.run([sys.executable, "-m", "mkd.cli.main", *args], capture_output=True, text=True,
                          cwd=REPO, env=env or clean_env(), timeout=timeout, check=False)
    return Finished(done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One `mkd serve` for the CLI tests, with the standard pool applied; tests delete what they create.

    It runs rfc-v2, explicitly: the capability tests check what the CLI refuses for a kernel without
    halt or hot update."""
    env = clean_env(MKD_SIMULATOR__KERNEL_PROFILE="rfc-v2")
    with DaemonProcess(tmp_path_factory.mktemp("cli") / "state", env=env) as running, \
            running.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        yield running


@pytest.fixture
def cli(daemon: DaemonProcess) -> RunCli:
    """`mkd --url DAEMON ARGS` in process, through typer's CliRunner."""
    runner = CliRunner(env={k: None for k in os.environ if k.startswith("MKD_")})

    def run(*args: str) -> Result:
        return runner.invoke(app, ["--url", daemon.url, *args])

    return run


def newest_event_id(url: str) -> int:
    """The id of the newest retained event (0 if none): replay everything, stop when the stream goes idle."""
    newest = 0
    try:
        with httpx.Client(base_url=url, timeout=httpx.Timeout(5.0, read=0.5)) as http, \
                connect_sse(http, "GET", "/v1/events", headers={"Last-Event-ID": "0"}) as source:
            for event in source.iter_sse():
                if event.id.isdigit():
                    newest = max(newest, int(event.id))
    except httpx.ReadTimeout:
        pass
    return newest


@dataclass
class ServedProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


def serve_beyond_loopback(state_dir: Path, tokens_file: Path, namespace: NetworkNamespace) -> ServedProcess:
    """`mkd serve` inside `namespace` on its veth address (beyond loopback, in plaintext by the
    explicit opt-out) with a tokens file; this test process is its client from the other end."""
    port = free_port()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = state_dir.parent / "serve.log"
    env = clean_env(MKD_DAEMON__TOKENS_FILE=str(tokens_file), MKD_DAEMON__INSECURE_PLAINTEXT="true")
    with open(log, "wb") as out:
        proc = subprocess.Popen([*namespace.exec_prefix, sys.executable, "-m", "mkd.cli.main", "serve",
                                 "--listen", f"{namespace.inner_address}:{port}", "--state-dir", str(state_dir)],
                                stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    url = f"http://{namespace.inner_address}:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mkd exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return ServedProcess(proc, url, log)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"mkd did not become ready: {log.read_text()[-2000:]}")

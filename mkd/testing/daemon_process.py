"""Run a real `mkd serve` process for tests and benchmarks (restart, kill, load tests)."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DaemonProcess:
    """`mkd serve` on a free loopback port with its own state directory."""

    def __init__(self, state_dir: Path, *, config: Path | None = None, env: dict[str, str] | None = None,
                 open_files: int | None = None, wrapper: list[str] | None = None, host: str = "127.0.0.1",
                 scheme: str = "http", http_options: dict[str, Any] | None = None) -> None:
        self.state_dir = state_dir
        self.config = config
        self.open_files = open_files  # a soft RLIMIT_NOFILE to start with (systemd's default is 1024)
        self.wrapper = wrapper or []  # a command the daemon runs under (strace ..., ip netns exec ...)
        self.env = {**os.environ, **(env or {})}
        self.host = host  # beyond loopback only inside a namespace the test made (mkd.testing.netns)
        self.port = free_port()
        self.url = f"{scheme}://{host}:{self.port}"
        self.http_options = http_options or {}  # httpx options: verify=CA file, cert=(cert, key), headers
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = state_dir.parent / f"mkd-{self.port}.log"

    def start(self, timeout: float = 30.0) -> DaemonProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            *self.wrapper,
            sys.executable,
            "-m",
            "mkd.cli.main",
            "serve",
            "--listen",
            f"{self.host}:{self.port}",
            "--state-dir",
            str(self.state_dir),
        ]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         preexec_fn=self._limit_open_files if self.open_files else None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mkd exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0, **self.http_options).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"mkd did not become ready: {self.log_tail()}")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the daemon's output (kept beside its state directory), for a failure message."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(no log: {exc})"

    def thread_dump(self) -> str:
        """Every thread's Python stack in the running daemon (`py-spy dump`), for a failure
        message about a daemon that did not do what it should have."""
        if self.proc is None or self.proc.poll() is not None:
            return "(not running)"
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        try:
            done = subprocess.run([spy, "dump", "--pid", str(self.proc.pid)], capture_output=True, text=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(py-spy dump failed: {exc})"
        return done.stdout + done.stderr

    def _limit_open_files(self) -> None:
        assert self.open_files is not None
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(self.open_files, hard), hard))

    @property
    def socket_path(self) -> Path:
        """The unix socket `mkd serve` binds by default."""
        return self.state_dir / "mkd.sock"

    def unix_client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url="http://localhost", timeout=timeout,
                            transport=httpx.HTTPTransport(uds=str(self.socket_path)))

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, **self.http_options)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

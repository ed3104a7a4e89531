"""`mkd run` and `mkd console` against a real daemon process over the tree kernel (issue 14 item 2):
run applies, waits ACTIVE and follows the console; the follower resumes after the daemon restarts
without printing a line twice or skipping one (Last-Event-ID is the console's byte offset)."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.cli.conftest import REPO, clean_env, run_mkd
from tests.helpers import POOL


@pytest.fixture
def tree_daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    env = clean_env(MKD_SIMULATOR__KERNEL_PROFILE="tree", MKD_RECONCILER__POLL_INTERVAL_S="0.1")
    with DaemonProcess(tmp_path / "state", env=env) as running, running.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        yield running


class Lines:
    """A running `mkd` process whose stdout lines are read as they come."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "mkd.cli.main", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=REPO, env=clean_env())
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def until(self, wanted: str, timeout: float = 60.0) -> list[str]:
        """Lines up to the first (new) one containing `wanted` (a generous bound, not a timing)."""
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while True:
            try:
                line = self._queue.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise AssertionError(f"no line with {wanted!r} after {self.seen[start:]}") from None
            if line is None:
                raise AssertionError(f"mkd exited ({self.proc.wait()}): {self.stderr()}")
            self.seen.append(line)
            if wanted in line:
                return self.seen[start:]

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(15)
        return self.stderr()

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read() if self.proc.poll() is not None else ""


def test_run_follows_the_console_and_resumes_across_a_daemon_restart(tree_daemon: DaemonProcess,
                                                                     tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(imagegen.vmlinux())
    run = Lines("--url", tree_daemon.url, "run", "web", "--kernel", str(kernel), "--cpus", "6",
                "--memory", "128M", "--cmdline", "quiet", "--no-progress")
    try:
        banner = run.until("Kernel command line")
        assert banner[0].endswith("multikernel: instance 1 (web) booting on mktty0")
        assert banner[-1].endswith("Kernel command line: quiet console=mktty0")  # added under tree
        run.until("web: up 1 s")
        tree_daemon.stop()
        tree_daemon.start()
        run.until("web: up ", timeout=60)  # a line printed after the restart
    finally:
        notes = run.stop()
    assert "+ create web" in notes and "ready web" in notes and "reconnecting" in notes
    with tree_daemon.client() as http:
        assert http.get("/v1/instances/web").json()["state"] == "ACTIVE"
        kept = http.get("/v1/instances/web/console", params={"follow": "false"}).text.splitlines()
    # Exactly the stored lines, in order: none twice, none skipped across the restart.
    assert run.seen == kept[:len(run.seen)]
    history = run_mkd("--url", tree_daemon.url, "console", "web", "--no-follow")
    assert history.code == 0 and history.stdout.splitlines()[:len(run.seen)] == run.seen


def test_console_of_an_unknown_instance_is_exit_3(tree_daemon: DaemonProcess) -> None:
    done = run_mkd("--url", tree_daemon.url, "console", "nosuch")
    assert done.code == 3 and "404" in done.stderr

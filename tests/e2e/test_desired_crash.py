"""SIGKILL the daemon at each step of a rolling replacement and of a restart after a crash
(issue 13 item 6): after the restart it converges, never starts an instance twice, and leaves
nothing in LOADING. An instance whose start outcome was lost is left to the operator."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB

CONFIG = """
[simulator]
kernel_profile = "tree"
halt_ack_timeout_s = 0.5
[reconciler]
poll_interval_s = 0.1
"""


def document(kernel: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": "web"},
            "spec": {"resources": {"cpus": [2, 3], "memory_bytes": 128 * MiB}, "kernel": kernel, **spec}}


def events(http: httpx.Client) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    with connect_sse(http, "GET", "/v1/events", headers={"Last-Event-ID": "0"}, timeout=3) as source:
        try:
            for sse in source.iter_sse():
                if sse.data:  # heartbeats carry none
                    found.append((sse.event, json.loads(sse.data)))
        except httpx.ReadTimeout:
            pass  # the log is exhausted
    return found


CRASH_WAIT_S = 30


def killed_at_its_crash_point(daemon: DaemonProcess) -> None:
    """The daemon armed with a crash point SIGKILLs itself there. When it does not, fail with what
    it was doing instead (the instance, its events, its threads; tests/e2e/conftest.py adds its
    log), and kill it: a daemon left running would outlive the test."""
    assert daemon.proc is not None
    try:
        code: int | None = daemon.proc.wait(CRASH_WAIT_S)
    except subprocess.TimeoutExpired:
        code = None
    if code == -signal.SIGKILL:
        return
    report = [f"the daemon was not killed at its crash point: {'still running' if code is None else code}"]
    if code is None:
        try:
            with daemon.client(timeout=5) as http:
                report.append("instance: " + http.get("/v1/instances/web", params={"format": "document"}).text)
                report.append("events: " + json.dumps(events(http)))
        except httpx.HTTPError as exc:
            report.append(f"(the API did not answer: {exc!r})")
        report.append("threads:\n" + daemon.thread_dump())
        daemon.kill()
    pytest.fail("\n".join(report), pytrace=False)


def config_file(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "mkd.toml"
    path.write_text(CONFIG + extra)
    return path


ROLLING = ["stop.after_kernel", "unload.after_kernel", "load.after_intent", "load.after_kernel",
           "start.after_intent", "start.after_kernel"]


@pytest.mark.parametrize("point", ROLLING)
def test_kill_during_a_rolling_replacement(tmp_path: Path, point: str) -> None:
    config = config_file(tmp_path)
    state = tmp_path / "state"
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        old = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        new = http.post("/v1/images", content=imagegen.vmlinux(mk_entry=0x1000080)).json()["sha256"]
        assert http.put("/v1/instances/web", json=document(old)).status_code == 201
        ready = http.get("/v1/instances/web/wait", params={"generation": 1, "timeout_s": 30})
        assert ready.status_code == 200, ready.text
    crashing = DaemonProcess(state, config=config, env={"MKD_DAEMON__CRASH_AT": point}).start()
    with crashing.client() as http:
        assert http.put("/v1/instances/web", json=document(new)).status_code == 200
    killed_at_its_crash_point(crashing)  # mid-sequence

    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        # (tree reports `active`, so a start intent without the syscall is simply LOADED again)
        done = http.get("/v1/instances/web/wait", params={"generation": 2, "timeout_s": 30})
        assert done.status_code == 200, done.text
        web = done.json()
        assert web["state"] == "ACTIVE" and web["kimage"]["kernel"] == new
        log = events(http)
    # never started twice: after the new generation, one way into ACTIVE (a start, or the
    # reconciliation that found the kernel had started it)
    spec_at = max(i for i, (kind, data) in enumerate(log) if kind == "spec" and data["generation"] == 2)
    into_active = [(kind, data) for kind, data in log[spec_at:] if data.get("to") == "ACTIVE"]
    assert len(into_active) == 1, into_active


@pytest.mark.parametrize("point", ["start.after_intent", "start.after_kernel"])
def test_kill_during_a_restart_after_a_crash(tmp_path: Path, point: str) -> None:
    faults = '\n[simulator.faults.instances.web]\nafter_start = "poweroff"\ndelay_s = 0.3\n'
    config = config_file(tmp_path, faults)
    state = tmp_path / "state"
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        # A few restarts past the crash, then the crash loop: the event log ends there, so reading it to
        # the end (events()) takes seconds, not a restart every half second until the 50th.
        doc = document(kernel, restartPolicy="Always", restartBackoff={"initial_s": 0.2, "max_s": 0.5},
                       maxRestarts=5)
        assert http.put("/v1/instances/web", json=doc).status_code == 201
        assert http.get("/v1/instances/web/wait", params={"state": "ACTIVE", "timeout_s": 30}).status_code == 200
    # The next daemon dies when it restarts the powered-off instance.
    crashing = DaemonProcess(state, config=config, env={"MKD_DAEMON__CRASH_AT": point}).start()
    killed_at_its_crash_point(crashing)

    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        web = http.get("/v1/instances/web").json()
        assert web["state"] != "LOADING"
        # it goes on restarting after each power-off, with the restarts counted across daemons
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            web = http.get("/v1/instances/web").json()
            if web["restarts"] >= 2:
                break
            time.sleep(0.1)
        assert web["restarts"] >= 2, web
        log = events(http)
        restarted = [data["attempt"] for kind, data in log if kind == "restarted"]
        assert restarted == sorted(restarted)


def test_a_lost_start_under_rfc_v2_is_left_to_the_operator(tmp_path: Path) -> None:
    config = tmp_path / "mkd.toml"
    config.write_text('[simulator]\nkernel_profile = "rfc-v2"\n[reconciler]\npoll_interval_s = 0.1\n')
    state = tmp_path / "state"
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
    crashing = DaemonProcess(state, config=config, env={"MKD_DAEMON__CRASH_AT": "start.after_intent"}).start()
    with crashing.client() as http:
        assert http.put("/v1/instances/web", json=document(kernel)).status_code == 201
    killed_at_its_crash_point(crashing)  # the reconciler's start
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        # rfc-v2 never reports active: whether the spawn runs is unknown, and it is not retried
        time.sleep(1.0)
        web = http.get("/v1/instances/web").json()
        assert (web["state"], web["failure"]) == ("FAILED", "start outcome unknown")
        running = {c["type"]: c for c in web["conditions"]}["Running"]
        assert (running["status"], running["reason"]) == ("False", "StartOutcomeUnknown")
        assert not [data for kind, data in events(http) if kind == "state" and data.get("to") == "ACTIVE"]

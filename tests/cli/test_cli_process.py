"""`python -m mkd.cli.main` as a real process against a real daemon, as an operator runs it."""

from __future__ import annotations

import json
from pathlib import Path

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess, free_port
from tests.cli.conftest import clean_env, newest_event_id, run_mkd
from tests.helpers import MiB


def test_operator_session_over_real_processes(daemon: DaemonProcess, tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(imagegen.vmlinux())
    env = clean_env(MKD_URL=daemon.url)  # the daemon named by the environment, not --url
    before = newest_event_id(daemon.url)

    created = run_mkd("instances", "create", "proc", "--cpus", "8", "--memory-bytes", str(256 * MiB), "-o", "json",
                      env=env)
    assert created.code == 0, created.stderr
    instance_id = json.loads(created.stdout)["id"]

    loaded = run_mkd("instances", "load", str(instance_id), "--kernel", str(kernel), "-o", "json", env=env)
    assert loaded.code == 0, loaded.stderr
    assert json.loads(loaded.stdout)["state"] == "LOADED"

    again = run_mkd("instances", "load", "proc", "--kernel", str(kernel), env=env)
    assert again.code == 4 and again.stdout == ""
    assert again.stderr.startswith("mkd: 409") and "EBUSY" in again.stderr and "Traceback" not in again.stderr

    started = run_mkd("instances", "start", "proc", "-o", "json", env=env)
    assert started.code == 0 and json.loads(started.stdout)["state"] == "ACTIVE"

    # Created, READY->LOADING, LOADING->LOADED, the refused load, LOADED->ACTIVE: one JSON line each.
    events = run_mkd("events", "--last-event-id", str(before), "--count", "5", "-o", "json", env=env)
    assert events.code == 0, events.stderr
    lines = [json.loads(line) for line in events.stdout.splitlines()]
    assert [line["id"] for line in lines] == list(range(before + 1, before + 6))
    assert all(line["data"]["id"] == instance_id for line in lines)
    assert [(line["event"], line["data"].get("to") or line["data"].get("operation")) for line in lines] == [
        ("created", "READY"), ("state", "LOADING"), ("state", "LOADED"), ("refused", "load"), ("state", "ACTIVE")]

    with daemon.client() as http:  # leave the shared daemon as found
        assert http.post("/v1/instances/proc/unload", json={"force": True}).status_code == 200
        assert http.delete("/v1/instances/proc").status_code == 204


def test_unreachable_daemon_is_exit_7_without_traceback() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    finished = run_mkd("--url", closed, "instances", "list")
    assert finished.code == 7 and finished.stdout == ""
    assert finished.stderr.startswith(f"mkd: cannot reach mkd at {closed}") and "Traceback" not in finished.stderr

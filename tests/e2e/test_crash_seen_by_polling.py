"""A real `mkd serve` over the tree kernel: a spawn panic injected with the fault setting is seen by
the status poller within a few intervals as a `state` event with cause `kernel`, and the console
file under the state directory holds the boot log and the panic trace (issue 10 items 3 and 5)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB

CONFIG = """
[daemon]
status_poll_interval_s = 0.2
[simulator]
kernel_profile = "tree"
[simulator.faults.instances.web]
after_start = "panic"
delay_s = 0.5
"""


def _kernel_state_event(http: Any, instance_id: int) -> dict[str, Any]:
    """Read /v1/events from the start until web's kernel-caused state event (a generous bound)."""
    with http.stream("GET", "/v1/events", headers={"Last-Event-ID": "0"}, timeout=30) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "state":
                data: dict[str, Any] = json.loads(line.split(":", 1)[1])
                if data["id"] == instance_id and data["cause"] == "kernel":
                    return data
    raise AssertionError("the event stream ended without the kernel's state event")


def test_a_panic_is_a_kernel_state_event_and_its_trace_is_on_disk(tmp_path: Path) -> None:
    config = tmp_path / "mkd.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        kernel = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        web = http.post("/v1/instances", json={"name": "web", "resources": {"cpus": [2], "memory_bytes": 128 * MiB}})
        assert web.status_code == 201, web.text
        loaded = http.post("/v1/instances/web/load", json={"kernel": kernel, "cmdline": "console=mktty0"})
        assert loaded.status_code == 200, loaded.text
        started_at = time.monotonic()
        assert http.post("/v1/instances/web/start").json()["state"] == "ACTIVE"
        event = _kernel_state_event(http, web.json()["id"])
        seen_after = time.monotonic() - started_at
        assert (event["from"], event["to"]) == ("ACTIVE", "LOADED")
        assert "Kernel panic - not syncing" in event["console"]
        assert http.get("/v1/instances/web").json()["state"] == "LOADED"
        [boot] = (state / "console" / web.json()["uid"]).glob("1-*.log")
        text = boot.read_text()
        assert text.index("multikernel: instance 1 (web) booting on mktty0") < text.index("Kernel panic")
        assert "Kernel command line: console=mktty0" in text
        assert seen_after < 20  # a generous bound: the panic comes after 0.5 s, polls every 0.2 s

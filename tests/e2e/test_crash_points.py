"""SIGKILL the daemon at every crash point; the restarted daemon reconciles before /readyz."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import connect_sse

from mkd.crash_points import POINTS
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from tests.helpers import POOL, MiB

Step = Callable[[httpx.Client, dict[str, str]], Any]


def _create(http: httpx.Client, name: str = "web") -> httpx.Response:
    return http.post("/v1/instances", json={"name": name, "resources": {"cpus": [2, 3], "memory_bytes": 128 * MiB}})


def _load(http: httpx.Client, ctx: dict[str, str]) -> httpx.Response:
    return http.post("/v1/instances/web/load", json={"kernel": ctx["kernel"], "cmdline": "quiet"})


# point -> (profile, setup steps run on a healthy daemon, the step that crashes)
SCENARIOS: dict[str, tuple[str, list[Step], Step]] = {
    "create.after_kernel": ("rfc-v2", [], lambda h, c: _create(h)),
    "delete.after_kernel": ("rfc-v2", [lambda h, c: _create(h)], lambda h, c: h.delete("/v1/instances/web")),
    "load.after_intent": ("rfc-v2", [lambda h, c: _create(h)], _load),
    "load.after_kernel": ("rfc-v2", [lambda h, c: _create(h)], _load),
    "unload.after_kernel": ("rfc-v2", [lambda h, c: _create(h), _load],
                            lambda h, c: h.post("/v1/instances/web/unload")),
    "start.after_intent": ("rfc-v2", [lambda h, c: _create(h), _load],
                           lambda h, c: h.post("/v1/instances/web/start")),
    "start.after_kernel": ("tree", [lambda h, c: _create(h), _load],
                           lambda h, c: h.post("/v1/instances/web/start")),
    "stop.after_kernel": ("tree", [lambda h, c: _create(h), _load, lambda h, c: h.post("/v1/instances/web/start")],
                          lambda h, c: h.post("/v1/instances/web/stop")),
    "pool.after_kernel": ("rfc-v2", [lambda h, c: _create(h)],
                          lambda h, c: h.put("/v1/pool", json={**POOL, "cpus": list(range(2, 12))})),
}

# What the records must say after reconciliation (None: the instance is gone).
EXPECTED: dict[str, tuple[str | None, str | None]] = {
    "create.after_kernel": ("READY", None),
    "delete.after_kernel": (None, None),
    "load.after_intent": ("READY", None),
    "load.after_kernel": ("LOADED", None),
    "unload.after_kernel": ("READY", None),
    "start.after_intent": ("FAILED", "start outcome unknown"),
    "start.after_kernel": ("ACTIVE", None),
    "stop.after_kernel": ("LOADED", None),
    "pool.after_kernel": ("READY", None),
}


def test_every_crash_point_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(POINTS) == set(EXPECTED)


def first_reconciled_event(http: httpx.Client) -> dict[str, Any] | None:
    """The log's first `reconciled` event (reconciliation ran before /readyz), None if the log has none."""
    latest = http.get("/metrics")  # any request: make sure the daemon answers
    assert latest.status_code == 200
    with connect_sse(http, "GET", "/v1/events", headers={"Last-Event-ID": "0"}, timeout=5) as source:
        try:
            for sse in source.iter_sse():
                if sse.event == "reconciled":
                    found: dict[str, Any] = json.loads(sse.data)
                    return found
        except httpx.ReadTimeout:
            pass  # the log is exhausted and the stream waits for live events
    return None


@pytest.mark.parametrize("point", list(SCENARIOS))
def test_kill_at_point_then_reconcile(tmp_path: Path, point: str) -> None:
    profile, setup, crash_step = SCENARIOS[point]
    config = tmp_path / "mkd.toml"
    config.write_text(f'[simulator]\nkernel_profile = "{profile}"\n')
    state = tmp_path / "state"
    ctx: dict[str, str] = {}
    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.put("/v1/pool", json=POOL).status_code == 201
        ctx["kernel"] = http.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        for step in setup:
            reply = step(http, ctx)
            assert reply.status_code < 300, reply.text
    crashing = DaemonProcess(state, config=config, env={"MKD_DAEMON__CRASH_AT": point}).start()
    with crashing.client() as http, pytest.raises(httpx.TransportError):
        crash_step(http, ctx)
    assert crashing.proc is not None and crashing.proc.wait(10) == -9

    with DaemonProcess(state, config=config) as daemon, daemon.client() as http:
        assert http.get("/readyz").json() == {"status": "ready"}
        items = http.get("/v1/instances").json()["items"]
        assert all(i["state"] != "LOADING" for i in items)
        expected_state, expected_failure = EXPECTED[point]
        web = next((i for i in items if i["name"] == "web"), None)
        if expected_state is None:
            assert web is None
        else:
            assert web is not None and web["state"] == expected_state, web
            assert web["failure"] == expected_failure
            assert (web["kimage"] is not None) == (expected_state in ("LOADED", "ACTIVE", "FAILED"))
        # No pool memory leaked: what is free is the pool less what instances hold.
        pool = http.get("/v1/pool").json()
        held = sum(c["bytes"] for i in items for c in i["memory"])
        assert pool["free"]["memory_bytes"] == pool["memory_bytes"] - held
        if point == "pool.after_kernel":
            assert pool["cpus"] == list(range(2, 12))
        assert first_reconciled_event(http) is not None, "reconciliation must say what it changed"
        # After reconciliation the daemon keeps working: the instance can go round again.
        if web is not None and web["state"] in ("LOADED", "FAILED", "ACTIVE"):
            assert http.post("/v1/instances/web/unload", json={"force": True}).status_code == 200
        if web is not None:
            assert http.delete("/v1/instances/web").status_code == 204

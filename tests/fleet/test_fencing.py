"""Fencing on the node (DESIGN "Fleet", fencing), through the services the node agent calls and
the daemon's own HTTP surface: a fenced OnNodeLoss instance is force-stopped and held (spec
untouched, condition Running False Fenced) — a new spec does not start it again, a delete still
drives it down — until the fence is lifted; the placements stored last survive a reload."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from mkd.domain.desired.spec import DeclaredSpec
from mkd.fleet.last_placements import LastPlacements
from mkd.services import fleet_fencing, fleet_node
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, upload


def spec(kernel: str, memory: int = 64 * MiB) -> DeclaredSpec:
    return DeclaredSpec.from_json({"resources": {"cpu_count": 1, "memory_bytes": memory}, "kernel": kernel,
                                   "state": "Active"})


def wait_for(client: TestClient, name: str, check: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown: dict[str, Any] = client.get(f"/v1/instances/{name}").json()
        if check(shown):
            return shown
        time.sleep(0.05)
    raise AssertionError(f"{name}: timed out; last {shown}")


def running(condition_reason: str) -> Any:
    def check(shown: dict[str, Any]) -> bool:
        found = [c for c in shown.get("conditions") or [] if c["type"] == "Running"]
        return bool(found) and found[0]["reason"] == condition_reason
    return check


def test_a_fenced_instance_is_stopped_held_and_released(make_client: MakeClient) -> None:
    client = make_client(reconciler={"poll_interval_s": 0.1})
    kernel = upload(client, imagegen.vmlinux())
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    fleet_node.apply_fleet_instance(daemon, "mover", {}, spec(kernel), "OnNodeLoss")
    fleet_node.apply_fleet_instance(daemon, "stayer", {}, spec(kernel), "Never")
    for name in ("mover", "stayer"):
        wait_for(client, name, lambda s: s["state"] == "ACTIVE")
    assert fleet_fencing.movable(daemon) == {"mover"}

    assert fleet_fencing.fence(daemon, fleet_fencing.movable(daemon), "the node's lease lapsed") == ["mover"]
    fenced = client.get("/v1/instances/mover").json()
    assert fenced["state"] == "LOADED"
    assert running("Fenced")(fenced)
    assert client.get("/v1/instances/stayer").json()["state"] == "ACTIVE"
    assert fleet_fencing.fenced(daemon) == {"mover"}
    assert fleet_fencing.fence(daemon, {"mover"}, "again") == []  # idempotent: nothing left to stop

    # a new spec from the fleet does not lift the fence: the reconciler leaves it stopped
    fleet_node.apply_fleet_instance(daemon, "mover", {"v": "2"}, spec(kernel), "OnNodeLoss")
    time.sleep(0.5)  # several reconciler ticks (poll_interval_s 0.1)
    held = client.get("/v1/instances/mover").json()
    assert held["state"] == "LOADED" and running("Fenced")(held)
    assert client.get("/v1/instances/mover?format=document").json()["spec"]["state"] == "Active"

    assert fleet_fencing.unfence(daemon, "mover") is True
    assert fleet_fencing.unfence(daemon, "mover") is False
    wait_for(client, "mover", lambda s: s["state"] == "ACTIVE")
    assert fleet_fencing.fenced(daemon) == set()
    # without a new spec too: lifted, it starts again (the fence's stop is no crash of its own)
    assert fleet_fencing.fence(daemon, {"mover"}, "lapsed again") == ["mover"]
    assert fleet_fencing.unfence(daemon, "mover") is True
    started = wait_for(client, "mover", lambda s: s["state"] == "ACTIVE")
    assert started["last_failure"]["reason"] == "fenced"


def test_a_fenced_instance_still_drives_down_when_removed(make_client: MakeClient) -> None:
    client = make_client(reconciler={"poll_interval_s": 0.1})
    kernel = upload(client, imagegen.vmlinux())
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    fleet_node.apply_fleet_instance(daemon, "gone", {}, spec(kernel), "Never")
    wait_for(client, "gone", lambda s: s["state"] == "ACTIVE")
    assert fleet_fencing.fence(daemon, {"gone"}, "placed on another node") == ["gone"]
    assert fleet_node.remove_fleet_instance(daemon, "gone") is False
    deadline = time.monotonic() + 20
    while client.get("/v1/instances/gone").status_code != 404:
        assert time.monotonic() < deadline, "the fenced instance was not deleted"
        time.sleep(0.05)


def test_fencing_skips_what_is_not_the_fleets(client: TestClient) -> None:
    local = {"name": "mine", "resources": {"cpu_count": 1, "memory_bytes": 64 * MiB}}
    assert client.post("/v1/instances", json=local).status_code == 201
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    assert fleet_fencing.fence(daemon, {"mine", "nowhere"}, "test") == []
    assert fleet_fencing.fenced(daemon) == set()
    assert fleet_fencing.unfence(daemon, "mine") is False


def test_the_placements_stored_last_are_this_nodes(tmp_path: Path) -> None:
    stored = LastPlacements(tmp_path, "node-a")
    assert stored.load() == {}
    placements = {"web": {"node": "node-a", "revision": 7, "booking": {"cpus": 1, "numa": 0, "memory_bytes": 1}}}
    stored.save(placements)
    assert LastPlacements(tmp_path, "node-a").load() == placements
    assert LastPlacements(tmp_path, "node-b").load() == {}  # a state dir reused under another name
    stored.save({})
    assert LastPlacements(tmp_path, "node-a").load() == {}
    assert [p.name for p in tmp_path.iterdir()] == ["fleet-placements.json"]  # no scratch file left

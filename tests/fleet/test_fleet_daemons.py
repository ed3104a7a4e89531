"""Three simulated mkd daemons on a 3-member etcd cluster (DESIGN "Fleet"): a fleet instance is
placed, handed to its node's desired-state engine and ends Active there; the node publishes its
status; local writes to it answer 409; a delete drives it down and frees its booking."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from mkd.fleet.etcd import EtcdClient
from mkd.fleet.keys import FleetKeys
from mkd.fleet.operations import FleetOperations
from mkd.fleet.store import FleetStore
from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.fleet.nodes import instance_document, running_nodes, wait_until
from tests.helpers import POOL


def surface_call(cluster: EtcdCluster, prefix: str, call: str, *args: Any) -> Any:
    async def run() -> Any:
        client = EtcdClient(cluster.endpoints, timeout_s=5)
        try:
            return await getattr(FleetOperations(FleetStore(client, FleetKeys(prefix))), call)(*args)
        finally:
            await client.close()

    return anyio.run(run)


@pytest.fixture(scope="module")
def fleet_prefix() -> str:
    return "/mkd-test/daemons"


@pytest.fixture(scope="module")
def fleet(etcd_cluster: EtcdCluster, fleet_prefix: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[DaemonProcess]]:
    labels = {f"node-{i}": {"rack": f"r{i % 2}"} for i in range(3)}
    with running_nodes(etcd_cluster, fleet_prefix, tmp_path_factory.mktemp("fleet"), labels) as daemons:
        yield daemons


def test_a_fleet_instance_ends_active_on_its_node(fleet: list[DaemonProcess], etcd_cluster: EtcdCluster,
                                                  fleet_prefix: str) -> None:
    with fleet[0].client() as http:
        kernel = http.get("/v1/images").json()["items"][0]["sha256"]
    def pooled_nodes() -> list[dict[str, Any]]:
        # the pool was defined after the nodes registered: their records follow it
        found: list[dict[str, Any]] = surface_call(etcd_cluster, fleet_prefix, "nodes")
        full = [n for n in found if n["capacity"]["cpus_free"] == len(POOL["cpus"])]  # type: ignore[arg-type]
        return full if len(full) == 3 else []

    nodes = wait_until("three registered nodes with their pools", pooled_nodes)
    assert {n["name"] for n in nodes} == {"node-0", "node-1", "node-2"}

    stored, created = surface_call(etcd_cluster, fleet_prefix, "put_instance", "web",
                                   instance_document("web", kernel, nodeSelector={"rack": "r1"}))
    assert created and stored["status"]["phase"] in ("Pending", "Placed", "Running")
    running = wait_until("web Running", lambda: (doc := surface_call(etcd_cluster, fleet_prefix, "get_instance", "web"))
                         ["status"]["phase"] == "Running" and doc)
    assert running["status"]["node"] == "node-1"  # the only node with rack=r1
    owner = fleet[1]
    with owner.client() as http:
        local = http.get("/v1/instances/web").json()
        assert local["state"] == "ACTIVE" and local["labels"]["mkd.dev/owner"] == "fleet"
        refused = http.put("/v1/instances/web", json=instance_document("web", kernel))
        assert refused.status_code == 409 and "owned by the fleet" in refused.json()["detail"]
        assert http.post("/v1/instances/web/stop").status_code == 409
        assert http.delete("/v1/instances/web").status_code == 409
        # its capacity still counts what the fleet instance holds as free (the fleet books it)
        assert wait_until("node-1's record", lambda: [n for n in surface_call(etcd_cluster, fleet_prefix, "nodes")
                                                    if n["name"] == "node-1"])[0]["capacity"]["cpus_free"] == 14
    for other in (fleet[0], fleet[2]):
        with other.client() as http:
            assert http.get("/v1/instances/web").status_code == 404

    surface_call(etcd_cluster, fleet_prefix, "delete_instance", "web")
    with owner.client() as http:
        wait_until("web gone locally", lambda: http.get("/v1/instances/web").status_code == 404)
    wait_until("web gone from the fleet",
               lambda: not surface_call(etcd_cluster, fleet_prefix, "instances"))


def phase_on(cluster: EtcdCluster, prefix: str, name: str) -> tuple[str, str | None]:
    status = surface_call(cluster, prefix, "get_instance", name)["status"]
    return status["phase"], status["node"]


def test_drain_moves_what_may_move_and_one_scheduler_leads(fleet: list[DaemonProcess], etcd_cluster: EtcdCluster,
                                                           fleet_prefix: str) -> None:
    with fleet[0].client() as http:
        kernel = http.get("/v1/images").json()["items"][0]["sha256"]
    mover = instance_document("mover", kernel, reschedule="OnNodeLoss")
    surface_call(etcd_cluster, fleet_prefix, "put_instance", "mover", mover)
    _, first = wait_until("mover Running", lambda: (found := phase_on(etcd_cluster, fleet_prefix, "mover"))[0]
                          == "Running" and found)
    assert first is not None
    drained = surface_call(etcd_cluster, fleet_prefix, "drain", first)
    assert drained["cordoned"] is True
    _, second = wait_until("mover Running elsewhere",
                           lambda: (found := phase_on(etcd_cluster, fleet_prefix, "mover"))[0] == "Running"
                           and found[1] != first and found)
    old = fleet[int(first.rsplit("-", 1)[1])]
    with old.client() as http:
        wait_until("mover gone from the drained node", lambda: http.get("/v1/instances/mover").status_code == 404)
    new = fleet[int(str(second).rsplit("-", 1)[1])]
    with new.client() as http:
        assert http.get("/v1/instances/mover").json()["state"] == "ACTIVE"
    assert surface_call(etcd_cluster, fleet_prefix, "uncordon", first)["cordoned"] is False
    leaders = []
    for daemon in fleet:
        with daemon.client() as http:
            text = http.get("/metrics").text
            leaders += [line for line in text.splitlines() if line.startswith("mkd_fleet_leader ")]
    assert sorted(leaders) == ["mkd_fleet_leader 0.0", "mkd_fleet_leader 0.0", "mkd_fleet_leader 1.0"]
    surface_call(etcd_cluster, fleet_prefix, "delete_instance", "mover")
    wait_until("mover gone from the fleet", lambda: "mover" not in {
        d["metadata"]["name"] for d in surface_call(etcd_cluster, fleet_prefix, "instances")})


def test_a_restarted_node_keeps_its_instances_and_drops_what_the_fleet_forgot(
        fleet: list[DaemonProcess], etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    with fleet[0].client() as http:
        kernel = http.get("/v1/images").json()["items"][0]["sha256"]
    for name in ("kept", "forgotten"):
        surface_call(etcd_cluster, fleet_prefix, "put_instance", name, instance_document(name, kernel, node="node-2"))
        wait_until(f"{name} Running", lambda n=name: phase_on(etcd_cluster, fleet_prefix, n) == ("Running", "node-2"))
    old = fleet[2]
    old.stop()

    async def forget() -> None:  # the fleet drops "forgotten" while node-2 is away
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        keys = FleetKeys(fleet_prefix)
        try:
            for key in (keys.placement("forgotten"), keys.instance("forgotten"), keys.status("forgotten")):
                await client.delete(key)
        finally:
            await client.close()

    anyio.run(forget)
    config = old.config
    assert config is not None
    restarted = DaemonProcess(old.state_dir, config=config)
    config.write_text(config.read_text().replace(old.url, restarted.url))
    fleet[2] = restarted.start()
    with restarted.client() as http:
        wait_until("forgotten driven down", lambda: http.get("/v1/instances/forgotten").status_code == 404)
        kept = http.get("/v1/instances/kept").json()
        assert kept["state"] == "ACTIVE" and kept["labels"]["mkd.dev/owner"] == "fleet"
    node = wait_until("node-2 registered again", lambda: [
        n for n in surface_call(etcd_cluster, fleet_prefix, "nodes") if n["name"] == "node-2"
        and n["url"] == restarted.url])
    assert node[0]["live"] is True
    assert phase_on(etcd_cluster, fleet_prefix, "kept") == ("Running", "node-2")


def test_an_image_no_node_has_fails_with_a_reason(fleet: list[DaemonProcess], etcd_cluster: EtcdCluster,
                                                  fleet_prefix: str) -> None:
    nowhere = "f" * 64
    surface_call(etcd_cluster, fleet_prefix, "put_instance", "orphan",
                 instance_document("orphan", nowhere, node="node-0"))
    status = wait_until("orphan Failed", lambda: (found := surface_call(
        etcd_cluster, fleet_prefix, "get_instance", "orphan")["status"])["phase"] == "Failed" and found)
    assert status["node"] == "node-0" and f"image {nowhere} is neither here nor on a live peer" in status["reason"]
    with fleet[0].client() as http:
        assert http.get("/v1/instances/orphan").status_code == 404  # nothing was declared
    surface_call(etcd_cluster, fleet_prefix, "delete_instance", "orphan")
    wait_until("orphan gone from the fleet", lambda: "orphan" not in {
        d["metadata"]["name"] for d in surface_call(etcd_cluster, fleet_prefix, "instances")})

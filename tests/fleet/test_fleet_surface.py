"""The FleetSurface over etcd (what `/v1/fleet/*` calls): documents, deletes, drain, uncordon,
and each refusal (404, 409, 422, 503); and a daemon without [fleet] never loads the fleet."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from mkd.errors import Conflict, InvalidInput, NotFound
from mkd.fleet.etcd import EtcdClient
from mkd.fleet.keys import FleetKeys
from mkd.fleet.operations import FleetOperations
from mkd.fleet.scheduler import Scheduler
from mkd.fleet.store import FleetStore, dumps
from mkd.fleet.surface import FleetUnavailable
from mkd.testing.daemon_process import free_port
from mkd.testing.etcd_cluster import EtcdCluster

SHA = "b" * 64
MIB = 1 << 20


def doc(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"kernel": SHA, "resources": {"cpu_count": 1, "memory_bytes": 64 * MIB}, **spec}}


Body = Callable[[FleetOperations, EtcdClient, FleetKeys], Awaitable[None]]


def with_surface(cluster: EtcdCluster, prefix: str, body: Body) -> None:
    async def run() -> None:
        client = EtcdClient(cluster.endpoints, timeout_s=5)
        keys = FleetKeys(prefix)
        try:
            await body(FleetOperations(FleetStore(client, keys)), client, keys)
        finally:
            await client.close()

    anyio.run(run)


async def register(client: EtcdClient, keys: FleetKeys, name: str) -> None:
    lease = await client.grant(30)
    await client.put(keys.node(name), dumps({"name": name, "capabilities": {"halt": True}, "labels": {},
                                             "capacity": {"cpus_free": 8, "memory_free": {"0": 1 << 30}}}),
                     lease=lease)


def test_put_get_list_is_idempotent(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def body(surface: FleetOperations, client: EtcdClient, keys: FleetKeys) -> None:
        stored, created = await surface.put_instance("a", {**doc("a"), "status": {"ignored": True}})
        assert created and stored["status"] == {"node": None, "phase": "Pending"}
        kv = await client.get(keys.instance("a"))
        again, created_again = await surface.put_instance("a", doc("a"))
        assert not created_again and again["spec"] == stored["spec"]
        assert (await client.get(keys.instance("a"))).mod_revision == kv.mod_revision  # type: ignore[union-attr]
        changed, _ = await surface.put_instance("a", doc("a", cmdline="quiet"))
        assert changed["spec"]["cmdline"] == "quiet"
        assert [d["metadata"]["name"] for d in await surface.instances()] == ["a"]
        with pytest.raises(NotFound):
            await surface.get_instance("nope")

    with_surface(etcd_cluster, fleet_prefix, body)


@pytest.mark.parametrize(("document", "says"), [
    ({**doc("a"), "kind": "Pool"}, "kind"),
    (doc("other"), "metadata.name"),
    (doc("a", id=3), "no spec.id"),
    (doc("a", reschedule="Sometimes"), "reschedule"),
    (doc("a", nodeSelector={"rack": 1}), "nodeSelector"),
    ({**doc("a"), "spec": {"resources": {}}}, "spec.kernel"),
    (doc("a", kernel="not-a-hash"), "sha256"),
    (doc("a", state="Running"), "spec: 'Running' is not a valid DesiredState"),
])
def test_invalid_documents_are_422(etcd_cluster: EtcdCluster, fleet_prefix: str, document: Any, says: str) -> None:
    async def body(surface: FleetOperations, client: EtcdClient, keys: FleetKeys) -> None:
        with pytest.raises(InvalidInput, match=says):
            await surface.put_instance("a", document)

    with_surface(etcd_cluster, fleet_prefix, body)


def test_delete_unplaced_is_immediate_and_placed_is_marked(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def body(surface: FleetOperations, client: EtcdClient, keys: FleetKeys) -> None:
        await surface.put_instance("loose", doc("loose"))
        await surface.delete_instance("loose")
        with pytest.raises(NotFound):
            await surface.get_instance("loose")
        await register(client, keys, "n1")
        await surface.put_instance("held", doc("held"))
        await Scheduler(surface.store, node="n1", lease_ttl_s=2, strategy="spread").place_round()
        marked = await surface.delete_instance("held")
        assert marked["metadata"]["deletionTimestamp"] and marked["status"]["node"] == "n1"
        with pytest.raises(Conflict, match="being deleted"):
            await surface.put_instance("held", doc("held"))
        with pytest.raises(NotFound):
            await surface.delete_instance("never")

    with_surface(etcd_cluster, fleet_prefix, body)


def test_drain_evicts_what_may_move_and_refuses_what_cannot(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def body(surface: FleetOperations, client: EtcdClient, keys: FleetKeys) -> None:
        await register(client, keys, "n1")
        await surface.put_instance("mover", doc("mover", reschedule="OnNodeLoss"))
        await surface.put_instance("stayer", doc("stayer"))
        scheduler = Scheduler(surface.store, node="n1", lease_ttl_s=2, strategy="spread")
        assert set((await scheduler.place_round()).placed) == {"mover", "stayer"}
        with pytest.raises(Conflict, match="stayer") as refused:
            await surface.drain("n1")
        assert refused.value.extra["instances"] == ["stayer"]
        evicted = await client.get(keys.placement("mover"))
        assert evicted is not None and evicted.json()["evict"] is True
        nodes = await surface.nodes()
        assert nodes[0]["cordoned"] is True and nodes[0]["live"] is True
        await register(client, keys, "n2")
        await surface.put_instance("late", doc("late"))
        assert (await scheduler.place_round()).placed == {"late": "n2"}  # never on the cordoned node
        await surface.delete_instance("stayer")
        await client.delete(keys.placement("stayer"))  # as the node does once it is down
        await client.delete(keys.instance("stayer"))
        assert await surface.drain("n1") == {**nodes[0], "cordoned": True}
        assert (await surface.uncordon("n1"))["cordoned"] is False
        with pytest.raises(NotFound):
            await surface.uncordon("ghost")

    with_surface(etcd_cluster, fleet_prefix, body)


def test_etcd_unreachable_is_503_with_retry_after() -> None:
    async def run() -> None:
        client = EtcdClient([f"http://127.0.0.1:{free_port()}"], timeout_s=0.3)
        try:
            with pytest.raises(FleetUnavailable) as refused:
                await FleetOperations(FleetStore(client, FleetKeys("/x"))).nodes()
            assert refused.value.status == 503 and refused.value.headers["Retry-After"]
        finally:
            await client.close()

    anyio.run(run)


def test_without_fleet_the_fleet_code_is_never_imported(tmp_path: Any) -> None:
    probe = ("import sys\nfrom fastapi.testclient import TestClient\nfrom mkd.app import create_app\n"
             "from mkd.config import load_settings\n"
             f"app = create_app(load_settings(overrides={{'daemon.state_dir': {str(tmp_path)!r}}}))\n"
             "with TestClient(app) as client:\n    assert client.get('/readyz').status_code == 200\n"
             "print(sorted(m for m in sys.modules if m.startswith('mkd.fleet')))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() in ("[]", "['mkd.fleet']", "['mkd.fleet', 'mkd.fleet.surface']")
    assert "mkd.fleet.etcd" not in out and "mkd.fleet.member" not in out

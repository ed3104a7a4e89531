"""The scheduler's campaign and its bookings as instances change (DESIGN "Fleet", Scheduling)."""

from __future__ import annotations

import anyio

from mkd.fleet.etcd import EtcdClient
from mkd.fleet.keys import FleetKeys
from mkd.fleet.operations import FleetOperations
from mkd.fleet.scheduler import Scheduler
from mkd.fleet.store import FleetStore, dumps
from mkd.testing.etcd_cluster import EtcdCluster

SHA = "c" * 64
MIB = 1 << 20


def doc(name: str, cpus: int = 1) -> dict[str, object]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name},
            "spec": {"kernel": SHA, "resources": {"cpu_count": cpus, "memory_bytes": 64 * MIB}}}


async def register(client: EtcdClient, keys: FleetKeys, name: str, cpus: int) -> None:
    lease = await client.grant(30)
    await client.put(keys.node(name), dumps({"name": name, "capabilities": {"halt": True}, "labels": {},
                                             "capacity": {"cpus_free": cpus, "memory_free": {"0": 1 << 30}}}),
                     lease=lease)


async def booking(client: EtcdClient, keys: FleetKeys, node: str, name: str) -> int:
    found = await client.get(keys.allocation(node))
    assert found is not None
    cpus: int = found.json()["instances"][name]["cpus"]
    return cpus


def test_a_resized_instance_is_rebooked_when_its_node_has_room(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        keys = FleetKeys(fleet_prefix)
        try:
            store = FleetStore(client, keys)
            surface = FleetOperations(store)
            scheduler = Scheduler(store, node="n1", lease_ttl_s=2, strategy="spread")
            await register(client, keys, "n1", 8)
            await surface.put_instance("a", doc("a", 1))
            await surface.put_instance("b", doc("b", 3))
            assert (await scheduler.place_round()).placed == {"a": "n1", "b": "n1"}
            await surface.put_instance("a", doc("a", 4))
            await scheduler.place_round()
            assert await booking(client, keys, "n1", "a") == 4  # 4 + 3 of 8: it fits
            await surface.put_instance("a", doc("a", 6))
            await scheduler.place_round()
            assert await booking(client, keys, "n1", "a") == 4  # 6 + 3 of 8 would not: kept
        finally:
            await client.close()

    anyio.run(run)


def test_when_the_leader_goes_another_scheduler_takes_over(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        clients = [EtcdClient(etcd_cluster.endpoints, timeout_s=5) for _ in range(3)]
        keys = FleetKeys(fleet_prefix)
        try:
            surface = FleetOperations(FleetStore(clients[0], keys))
            await register(clients[0], keys, "n1", 8)
            schedulers = [Scheduler(FleetStore(c, keys), node=f"s{i}", lease_ttl_s=2, strategy="spread")
                          for i, c in enumerate(clients[1:])]

            async def until(check: object) -> None:
                with anyio.fail_after(20):
                    while not check():  # type: ignore[operator]
                        await anyio.sleep(0.05)

            async with anyio.create_task_group() as tasks:
                for scheduler in schedulers:
                    tasks.start_soon(scheduler.run)
                await until(lambda: sum(s.is_leader for s in schedulers) == 1)
                await surface.put_instance("first", doc("first"))
                leader = next(s for s in schedulers if s.is_leader)
                await until(lambda: leader.placements == 1)
                revoked = leader.lease
                await clients[0].revoke(revoked)  # its lease goes: so does its leadership
                await until(lambda: [s.lease for s in schedulers if s.is_leader] not in ([], [revoked]))
                await surface.put_instance("second", doc("second"))
                await until(lambda: sum(s.placements for s in schedulers) == 2)
                tasks.cancel_scope.cancel()
            placed = {d["metadata"]["name"]: d["status"]["node"] for d in await surface.instances()}
            assert placed == {"first": "n1", "second": "n1"}
        finally:
            for client in clients:
                await client.close()

    anyio.run(run)

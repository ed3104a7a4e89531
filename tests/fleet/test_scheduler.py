"""The scheduler's campaign and its bookings as instances change (DESIGN "Fleet", Scheduling)."""

from __future__ import annotations

from typing import Any

import anyio

from mkd.fleet.etcd import EtcdClient, Json, TxnResult
from mkd.fleet.keys import FleetKeys
from mkd.fleet.operations import FleetOperations
from mkd.fleet.scheduler import Scheduler
from mkd.fleet.store import FleetStore, ViewCache, dumps
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
            # The leader changes by the revoke below, not by expiry: a lease long enough that a loaded
            # machine's stalls do not make it change hands meanwhile.
            schedulers = [Scheduler(FleetStore(c, keys), node=f"s{i}", lease_ttl_s=6, strategy="spread")
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
                # Whoever leads once it is placed (on a loaded machine a 2 s lease may already have
                # changed hands once before the first placement).
                await until(lambda: sum(s.placements for s in schedulers) == 1
                            and sum(s.is_leader for s in schedulers) == 1)
                leader = next(s for s in schedulers if s.is_leader)
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


def test_resigning_frees_the_leader_key_at_once(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        keys = FleetKeys(fleet_prefix)
        try:
            first = Scheduler(FleetStore(client, keys), node="a", lease_ttl_s=30, strategy="spread")
            second = Scheduler(FleetStore(client, keys), node="b", lease_ttl_s=30, strategy="spread")
            assert await first.campaign() and not await second.campaign()
            await first.resign()
            assert not first.is_leader and await client.get(keys.leader) is None
            assert await second.campaign()  # no 30 s wait for the lease to run out
        finally:
            await client.close()

    anyio.run(run)


def test_campaigning_again_while_the_lease_holds_keeps_the_lead(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        keys = FleetKeys(fleet_prefix)
        try:
            leader = Scheduler(FleetStore(client, keys), node="a", lease_ttl_s=30, strategy="spread")
            other = Scheduler(FleetStore(client, keys), node="b", lease_ttl_s=30, strategy="spread")
            assert await leader.campaign()
            assert await leader.campaign()  # its own key on its own lease: still the leader
            assert not await other.campaign()
        finally:
            await client.close()

    anyio.run(run)


class InterferingClient(EtcdClient):
    """Before the first placement transaction, another writer books the node (as a second
    leader would): the scheduler's comparison fails and it must read the node again."""

    def __init__(self, *args: Any, allocation_key: str, foreign: bytes, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allocation_key = allocation_key
        self.foreign = foreign
        self.interfered = False

    async def txn(self, compare: list[Json], success: list[Json], failure: list[Json] | None = None) -> TxnResult:
        if not self.interfered and any("request_put" in op for op in success) and len(success) == 3:
            self.interfered = True
            await self.put(self.allocation_key, self.foreign)
        return await super().txn(compare, success, failure)


def test_a_lost_comparison_rereads_the_node_and_books_only_what_still_fits(etcd_cluster: EtcdCluster,
                                                                          fleet_prefix: str) -> None:
    async def run() -> None:
        keys = FleetKeys(fleet_prefix)
        foreign = dumps({"instances": {"elsewhere": {"cpus": 3, "numa": 0, "memory_bytes": 0}}})
        client = InterferingClient(etcd_cluster.endpoints, timeout_s=5, allocation_key=keys.allocation("n1"),
                                   foreign=foreign)
        try:
            await register(client, keys, "n1", 4)
            surface = FleetOperations(FleetStore(client, keys))
            await surface.put_instance("a", doc("a"))
            await surface.put_instance("b", doc("b"))
            scheduler = Scheduler(FleetStore(client, keys), node="s", lease_ttl_s=2, strategy="spread")
            result = await scheduler.place_round()
            assert client.interfered and result.lost_compares >= 1
            assert result.placed == {"a": "n1"}  # 3 foreign + 1: full; b waits for a round with room
            allocation = await client.get(keys.allocation("n1"))
            assert allocation is not None and set(allocation.json()["instances"]) == {"elsewhere", "a"}
            assert await client.get(keys.placement("b")) is None
        finally:
            await client.close()

    anyio.run(run)


def test_the_view_cache_reads_changes_and_rereads_after_a_delete(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=5)
        keys = FleetKeys(fleet_prefix)
        store = FleetStore(client, keys)
        try:
            cache = ViewCache(store)
            await register(client, keys, "n1", 8)
            for name in ("a", "b"):
                await client.put(keys.instance(name), dumps(doc(name)))
            first = await cache.read()
            assert set(first.instances) == {"a", "b"} and cache.full_reads == 1

            async def same_as_a_full_read() -> None:
                cached, fresh = await cache.read(), await store.view(statuses=False)
                assert {n: kv.value for n, kv in cached.instances.items()} == {
                    n: kv.value for n, kv in fresh.instances.items()}
                assert cached.nodes == fresh.nodes and cached.cordons == fresh.cordons

            await client.put(keys.instance("a"), dumps(doc("a", 2)))
            await client.put(keys.instance("c"), dumps(doc("c")))
            await client.put(keys.cordon("n1"), "{}")
            await same_as_a_full_read()
            assert cache.full_reads == 1  # only what changed was read
            await client.delete(keys.instance("b"))
            await client.put(keys.instance("d"), dumps(doc("d")))  # as many keys as before: the count still tells
            await same_as_a_full_read()
            assert cache.full_reads == 2
        finally:
            await client.close()

    anyio.run(run)

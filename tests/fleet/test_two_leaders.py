"""DESIGN "Fleet", Scheduling: two schedulers leading at once (the first one's lease expiring
under it) while 500 instances are placed: no node booked beyond its capacity, every instance on
exactly one node; and what fits nowhere stays Pending with a reason."""

from __future__ import annotations

import anyio
import pytest

from mkd.fleet.etcd import EtcdClient
from mkd.fleet.keys import FleetKeys
from mkd.fleet.placement import NodeView, booked
from mkd.fleet.scheduler import Scheduler, bookings_of
from mkd.fleet.store import FleetStore, dumps
from mkd.testing.etcd_cluster import EtcdCluster

MIB = 1 << 20
SHA = "a" * 64


def instance(name: str, cpus: int, memory: int, **spec: object) -> bytes:
    return dumps({"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name, "labels": {}},
                  "spec": {"kernel": SHA, "resources": {"cpu_count": cpus, "memory_bytes": memory}, **spec}})


async def register(client: EtcdClient, keys: FleetKeys, name: str, cpus: int, memory: dict[int, int],
                   lease: int) -> None:
    record = {"name": name, "url": "http://127.0.0.1:1", "profile": "tree", "arch": "x86_64",
              "capabilities": {"halt": True}, "labels": {}, "cordoned": False, "version": "test",
              "capacity": {"cpus_free": cpus, "memory_free": {str(k): v for k, v in memory.items()}}}
    await client.put(keys.node(name), dumps(record), lease=lease)


@pytest.mark.parametrize("cpus_per_node", [360, 300])
def test_two_leaders_never_overbook_and_place_each_instance_once(etcd_cluster: EtcdCluster, fleet_prefix: str,
                                                                 cpus_per_node: int) -> None:
    """360 CPUs a node: it all fits, but not by much. 300: 900 CPUs for 1,000 asked, so the
    leaders race for the last room and some instances must stay Pending."""
    async def run() -> None:
        keys = FleetKeys(fleet_prefix)
        clients = [EtcdClient(etcd_cluster.endpoints, timeout_s=10) for _ in range(3)]
        setup, first_client, second_client = clients
        try:
            node_lease = await setup.grant(60)
            # 500 instances asking 1-3 CPUs and 64-128 MiB: 1,000 CPUs and 48,000 MiB in all,
            # on three nodes of 2 x 9,000 MiB.
            for n in range(3):
                await register(setup, keys, f"node-{n}", cpus_per_node, {0: 9000 * MIB, 1: 9000 * MIB}, node_lease)
            async with anyio.create_task_group() as tasks:
                for i in range(500):
                    tasks.start_soon(setup.put, keys.instance(f"i{i:03}"), instance(f"i{i:03}", 1 + i % 3,
                                                                                    (64 + 64 * (i % 2)) * MIB))
            first = Scheduler(FleetStore(first_client, keys), node="node-0", lease_ttl_s=2, strategy="most-allocated")
            second = Scheduler(FleetStore(second_client, keys), node="node-1", lease_ttl_s=2, strategy="spread")
            assert await first.campaign()
            assert not await second.campaign()  # one leader at a time while the lease holds
            await first_client.revoke(first.lease)  # the first one's lease expires under it...
            assert await second.campaign()  # ...a second leader is elected...
            assert first.is_leader  # ...and the first has not noticed: both act as leader
            for _ in range(3):  # rounds in parallel until nothing is left to place
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(first.place_round)
                    tasks.start_soon(second.place_round)

            view = await FleetStore(setup, keys).view()
            assert len(view.instances) == 500
            pending = {name for name, status in view.statuses.items() if status.get("phase") == "Pending"}
            if cpus_per_node * 3 >= 1000:
                assert sorted(view.placements) == sorted(view.instances)  # every instance placed
            else:
                assert pending and not pending & set(view.placements)
                assert sorted([*view.placements, *pending]) == sorted(view.instances)
            where: dict[str, list[str]] = {}
            for node, bookings in bookings_of(view).items():
                capacity = NodeView.of(view.nodes[node])
                cpus, memory = booked(bookings)
                assert cpus <= capacity.cpus, f"{node}: {cpus} CPUs booked of {capacity.cpus}"
                for numa, size in memory.items():
                    assert size <= capacity.memory[numa], f"{node} NUMA {numa}: {size} bytes booked"
                for name in bookings:
                    where.setdefault(name, []).append(node)
            for name, kv in view.placements.items():
                assert where[name] == [kv.json()["node"]], f"{name} booked on {where[name]}, placed on {kv.json()}"
            assert first.placements + second.placements == len(view.placements)
        finally:
            for client in clients:
                await client.close()

    anyio.run(run)


def test_what_fits_nowhere_stays_pending_with_a_reason(etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    async def run() -> None:
        keys = FleetKeys(fleet_prefix)
        client = EtcdClient(etcd_cluster.endpoints, timeout_s=10)
        try:
            lease = await client.grant(60)
            await register(client, keys, "small", 2, {0: 256 * MIB}, lease)
            await client.put(keys.instance("huge"), instance("huge", 4, 64 * MIB))
            await client.put(keys.instance("elsewhere"), instance("elsewhere", 1, 64 * MIB, node="other"))
            await client.put(keys.instance("fits"), instance("fits", 2, 128 * MIB))
            scheduler = Scheduler(FleetStore(client, keys), node="small", lease_ttl_s=2, strategy="spread")
            result = await scheduler.place_round()
            assert result.placed == {"fits": "small"}
            assert result.pending["huge"] == "no node fits: small: 0 CPUs free, 4 needed"  # "fits" came first
            assert "spec.node 'other' is not a live node" in result.pending["elsewhere"]
            status = await client.get(keys.status("huge"))
            assert status is not None and status.json() == {"phase": "Pending", "reason": result.pending["huge"]}
            again = await scheduler.place_round()  # nothing changed: nothing written
            assert again.placed == {} and set(again.pending) == {"huge", "elsewhere"}
        finally:
            await client.close()

    anyio.run(run)

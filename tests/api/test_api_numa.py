"""Per-NUMA-node pool memory is checked before the kernel is asked (tree profile)."""

from __future__ import annotations

from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem

FOUR_NODES = {"kernel_profile": "tree", "numa_nodes": 4, "cpus": 16}
POOL_ON_NODE_0 = {"cpus": list(range(2, 16)), "memory_base": 0x1_0000_0000, "memory_bytes": 1 << 30}


def test_memory_on_a_node_without_pool_memory_is_refused_by_the_daemon(make_client: MakeClient) -> None:
    client = make_client(pool=POOL_ON_NODE_0, simulator=FOUR_NODES)
    assert {c["numa_node"] for c in client.get("/v1/pool").json()["chunks"]} == {0}
    body = assert_problem(client.post("/v1/instances", json={
        "name": "far", "resources": {"cpu_count": 2, "numa_nodes": [2], "memory_bytes": 64 * MiB}}), 409, "ENOMEM")
    assert "node 2" in body["detail"]
    assert client.get("/v1/instances").json()["items"] == []


def test_compact_local_prefers_cpus_where_the_memory_is(make_client: MakeClient) -> None:
    client = make_client(pool=POOL_ON_NODE_0, simulator=FOUR_NODES)
    reply = client.post("/v1/instances", json={"name": "near", "resources": {"cpu_count": 2, "memory_bytes": 64 * MiB}})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["resources"]["cpus"] == [2, 3]  # node 0: the only node with pool memory
    assert {c["numa_node"] for c in body["memory"]} == {0}


def test_cpus_on_a_node_without_pool_memory_get_memory_from_any_node(make_client: MakeClient) -> None:
    """The reproduction of issue 9 (divergence 5): the default policy is prefer-local, so a request
    the kernel would accept (spec 5.5: no node named, any node) is not refused for locality."""
    client = make_client(pool=POOL_ON_NODE_0, simulator=FOUR_NODES)
    reply = client.post("/v1/instances",
                        json={"name": "far", "resources": {"cpus": [14, 15], "memory_bytes": 64 * MiB}})
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert {c["numa_node"] for c in client.get("/v1/host").json()["topology"]["cpus"] if c["id"] in (14, 15)} == {3}
    assert {c["numa_node"] for c in body["memory"]} == {0}
    assert sum(c["bytes"] for c in body["memory"]) == 64 * MiB
    assert body["resources"]["numa_node"] is None  # the kernel was told no node


def test_local_insists_on_the_cpus_node(make_client: MakeClient) -> None:
    client = make_client(pool=POOL_ON_NODE_0, simulator=FOUR_NODES)
    body = assert_problem(client.post("/v1/instances", json={"name": "far", "resources": {
        "cpus": [14, 15], "memory_bytes": 64 * MiB, "memory_policy": "local"}}), 409, "ENOMEM")
    assert "node 3" in body["detail"]
    assert client.get("/v1/instances").json()["items"] == []


def test_prefer_local_names_the_cpus_node_when_it_has_room(make_client: MakeClient) -> None:
    client = make_client(pool=POOL_ON_NODE_0, simulator=FOUR_NODES)
    reply = client.post("/v1/instances", json={"name": "near", "resources": {"cpus": [2, 3], "memory_bytes": 64 * MiB}})
    assert reply.status_code == 201, reply.text
    assert reply.json()["resources"]["numa_node"] == 0
    assert {c["numa_node"] for c in reply.json()["memory"]} == {0}

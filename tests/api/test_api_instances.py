"""Instances and the pool over HTTP."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import MakeClient
from tests.helpers import POOL, GiB, MiB, assert_problem, create


def test_host_describes_the_simulated_machine(client: TestClient) -> None:
    body = client.get("/v1/host").json()
    assert body["backend"] == "simulated"
    assert body["kernel_profile"] == "rfc-v2"
    assert len(body["topology"]["cpus"]) == 16
    assert {c["numa_node"] for c in body["topology"]["cpus"]} == {0, 1}
    assert body["capabilities"]["halt"] is False


def test_pool_put_is_idempotent(make_client: MakeClient) -> None:
    client = make_client(pool=None)
    first = client.put("/v1/pool", json=POOL)
    assert first.status_code == 201, first.text
    again = client.put("/v1/pool", json=POOL)
    assert again.status_code == 200
    assert again.json()["changed"] is False
    assert again.headers["ETag"] == first.headers["ETag"] == client.get("/v1/pool").headers["ETag"]
    pool = client.get("/v1/pool").json()
    assert pool["cpus"] == POOL["cpus"] and pool["free"]["memory_bytes"] == 4 * GiB


def test_pool_dry_run_changes_nothing(client: TestClient) -> None:
    before = client.get("/v1/pool")
    reply = client.put("/v1/pool?dry_run=true", json={**POOL, "cpus": list(range(4, 16))})
    assert reply.status_code == 200 and reply.json()["changed"] is True
    assert client.get("/v1/pool").json() == before.json()


def test_pool_refuses_taking_cpus_an_instance_holds(client: TestClient) -> None:
    create(client, "web", cpus=[2, 3])
    body = assert_problem(client.put("/v1/pool", json={**POOL, "cpus": list(range(3, 16))}), 409, "EBUSY")
    assert "web" in body["detail"]


def test_pool_cpu_not_present_is_enodev(make_client: MakeClient) -> None:
    client = make_client(pool=None)
    assert_problem(client.put("/v1/pool", json={**POOL, "cpus": [2, 99]}), 422, "ENODEV")


def test_create_read_list_delete(client: TestClient) -> None:
    reply = client.post("/v1/instances", json={"name": "web", "resources": {"cpus": [2, 3], "memory_bytes": 512 * MiB}})
    assert reply.status_code == 201, reply.text
    web = reply.json()
    assert reply.headers["Location"] == f"/v1/instances/{web['id']}"
    assert web["id"] == 1 and web["state"] == "READY" and web["kernel_state"] == "ready"
    assert sum(c["bytes"] for c in web["memory"]) == 512 * MiB
    assert client.get("/v1/instances/web").json()["id"] == 1
    assert client.get("/v1/instances/1").headers["ETag"] == reply.headers["ETag"]
    db = create(client, "db", cpus=[4])
    assert db["id"] == 2
    listing = client.get("/v1/instances?limit=1").json()
    assert [i["name"] for i in listing["items"]] == ["web"]
    rest = client.get(f"/v1/instances?limit=1&cursor={listing['next_cursor']}").json()
    assert [i["name"] for i in rest["items"]] == ["db"] and rest["next_cursor"] is None
    assert client.delete("/v1/instances/web").status_code == 204
    assert_problem(client.get("/v1/instances/web"), 404, "ENOENT")
    assert client.get("/v1/pool").json()["free"]["memory_bytes"] == 4 * GiB - 256 * MiB


def test_refs_outside_the_id_range_are_einval(client: TestClient) -> None:
    for ref in ("0", "-1", "2048", "2049", "+0"):
        assert_problem(client.get(f"/v1/instances/{ref}"), 422, "EINVAL")
        assert_problem(client.post(f"/v1/instances/{ref}/start"), 422, "EINVAL")
    assert_problem(client.get("/v1/instances/5"), 404, "ENOENT")
    assert_problem(client.get("/v1/instances/nosuch"), 404, "ENOENT")


def test_daemon_checks_refuse_before_the_kernel(client: TestClient) -> None:
    create(client, "web", cpus=[2, 3])
    assert_problem(client.post("/v1/instances", json={"name": "web", "resources": {"cpus": [5]}}), 409, "EEXIST")
    assert_problem(client.post("/v1/instances", json={"name": "b", "id": 1, "resources": {"cpus": [5]}}), 409, "EEXIST")
    body = assert_problem(client.post("/v1/instances", json={"name": "c", "resources": {"cpus": [3]}}), 409, "EBUSY")
    assert "3" in body["detail"]
    assert_problem(client.post("/v1/instances", json={"name": "d", "resources": {"cpus": [99]}}), 422, "ENODEV")
    assert_problem(client.post("/v1/instances", json={"name": "e", "resources": {"cpus": [0]}}), 409, "EBUSY")
    assert_problem(client.post("/v1/instances", json={"name": "f", "resources": {"memory_bytes": 8 * GiB}}),
                   422, "EINVAL")  # rfc-v2 memory-bytes is a u32
    create(client, "big", memory_bytes=3 * GiB)
    assert_problem(client.post("/v1/instances", json={"name": "f", "resources": {"memory_bytes": 1 * GiB}}),
                   409, "ENOMEM")
    assert_problem(client.post("/v1/instances", json={"name": "123", "resources": {}}), 422)
    assert_problem(client.post("/v1/instances", json={"name": "g", "id": 2048, "resources": {}}), 422)
    assert [i["name"] for i in client.get("/v1/instances").json()["items"]] == ["web", "big"]


def test_create_dry_run_stores_nothing(client: TestClient) -> None:
    reply = client.post("/v1/instances?dry_run=true", json={"name": "web", "resources": {"cpu_count": 2}})
    assert reply.status_code == 200, reply.text
    # compact: the NUMA node that can hold the most (node 1: CPUs 8-15 all free) first.
    assert reply.json()["items"][0]["resources"]["cpus"] == [8, 9]
    assert client.get("/v1/instances").json()["items"] == []


def test_bad_bodies_are_problems_never_500(client: TestClient) -> None:
    assert_problem(client.post("/v1/instances", content=b"{", headers={"content-type": "application/json"}), 422)
    assert_problem(client.post("/v1/instances", json={"name": "x", "resources": {"memory_bytes": 1 << 80}}), 422)
    assert_problem(client.post("/v1/instances", json=[1, 2]), 422)
    assert_problem(client.post("/v1/instances", content=b"x", headers={"content-type": "image/png"}), 415)
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.put("/v1/host"), 405)
    assert_problem(client.get("/v1/instances?limit=0"), 422)
    assert_problem(client.get("/v1/instances?cursor=garbage!"), 422)

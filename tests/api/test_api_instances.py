"""Instances and the pool over HTTP."""

from __future__ import annotations

import errno

import pytest
from fastapi.testclient import TestClient

from tests.conftest import MakeClient
from tests.helpers import MEM, POOL, GiB, MiB, assert_problem, create


def test_host_describes_the_simulated_machine(client: TestClient) -> None:
    body = client.get("/v1/host").json()
    assert body["backend"] == "simulated"
    assert body["kernel_profile"] == "tree"  # DESIGN "Two kernel generations": the default
    assert len(body["topology"]["cpus"]) == 16
    assert {c["numa_node"] for c in body["topology"]["cpus"]} == {0, 1}
    assert body["capabilities"]["halt"] is True and body["capabilities"]["hot_update"] is True


def test_rfc_v2_is_there_when_asked_for(v2_client: TestClient) -> None:
    body = v2_client.get("/v1/host").json()
    assert body["kernel_profile"] == "rfc-v2"
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


def test_daemon_checks_refuse_before_the_kernel(v2_client: TestClient) -> None:
    client = v2_client  # rfc-v2: memory-bytes is a u32
    def post(name: str, instance_id: int | None = None, **resources: object) -> object:
        body: dict[str, object] = {"name": name, "resources": {"memory_bytes": MEM, **resources}}
        if instance_id is not None:
            body["id"] = instance_id
        return client.post("/v1/instances", json=body)

    create(client, "web", cpus=[2, 3])
    assert_problem(post("web", cpus=[5]), 409, "EEXIST")
    assert_problem(post("b", 1, cpus=[5]), 409, "EEXIST")
    body = assert_problem(post("c", cpus=[3]), 409, "EBUSY")
    assert "3" in body["detail"]
    assert_problem(post("d", cpus=[99]), 422, "ENODEV")
    assert_problem(post("e", cpus=[0]), 409, "EBUSY")
    assert_problem(post("f", memory_bytes=8 * GiB), 422, "EINVAL")  # rfc-v2 memory-bytes is a u32
    create(client, "big", memory_bytes=3 * GiB)
    assert_problem(post("f", memory_bytes=1 * GiB), 409, "ENOMEM")
    assert_problem(post("123"), 422)
    assert_problem(post("g", 2048), 422)
    assert [i["name"] for i in client.get("/v1/instances").json()["items"]] == ["web", "big"]


def test_create_dry_run_stores_nothing(client: TestClient) -> None:
    body = {"name": "web", "resources": {"cpu_count": 2, "memory_bytes": 64 * MiB}}
    reply = client.post("/v1/instances?dry_run=true", json=body)
    assert reply.status_code == 200, reply.text
    # compact, prefer-local: the CPUs go where the pool memory is (tree: node 0 holds the pool).
    assert reply.json()["resources"]["cpus"] == [2, 3]
    assert client.get("/v1/instances").json()["items"] == []


def test_json_dry_run_answers_the_shape_of_the_real_call(client: TestClient) -> None:
    """DESIGN "HTTP API": a JSON dry run answers one instance, as the create itself does."""
    body = {"name": "web", "resources": {"cpus": [2, 3], "memory_bytes": 64 * MiB}}
    dry = client.post("/v1/instances?dry_run=true", json=body)
    assert dry.status_code == 200, dry.text
    real = client.post("/v1/instances", json=body)
    assert real.status_code == 201, real.text
    assert "items" not in dry.json()
    assert set(dry.json()) == set(real.json())
    for field in ("id", "name", "state", "resources", "kimage"):
        assert dry.json()[field] == real.json()[field], field


@pytest.mark.parametrize(
    ("resources", "fragment"),
    [
        ({"cpus": [2]}, "resources.memory_bytes: Field required"),
        ({"cpus": [2], "memory_bytes": 0}, "resources.memory_bytes: Input should be greater than or equal to 1"),
        ({"cpus": [2], "memory_bytes": None}, "resources.memory_bytes"),
    ],
)
def test_json_create_requires_memory(client: TestClient, resources: dict[str, object], fragment: str) -> None:
    for query in ("", "?dry_run=true"):
        body = assert_problem(client.post(f"/v1/instances{query}", json={"name": "web", "resources": resources}),
                              422, "EINVAL")
        assert fragment in body["detail"]
        assert body["errno_value"] == errno.EINVAL
    assert client.get("/v1/instances").json()["items"] == []


def test_unaligned_memory_is_einval(client: TestClient) -> None:
    body = assert_problem(client.post("/v1/instances", json={"name": "web", "resources": {"memory_bytes": 4097}}),
                          422, "EINVAL")
    assert "not a multiple of the 4 KiB page" in body["detail"]


@pytest.mark.parametrize("name", [".", "..", "+1", "-0", "007"])
def test_names_that_read_as_paths_or_ids_are_refused(client: TestClient, name: str) -> None:
    """DESIGN "Ids and refs": names become sysfs paths, and a {ref} that looks numeric is an id."""
    body = assert_problem(client.post("/v1/instances", json={"name": name, "resources": {"memory_bytes": 64 * MiB}}),
                          422, "EINVAL")
    assert repr(name) in body["detail"]
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

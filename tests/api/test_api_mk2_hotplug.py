"""Issue 10 item 2 through HTTP: the v7.0-mk2 capabilities, PATCH of an ACTIVE instance through the
spawn's ACK (a partial failure says what applied), memory hot-add only when enabled, LLC requests
refused where the kernel would ignore them, ids above 2047 never created."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.db import repository
from mkd.db.session import transaction
from mkd.services.context import Daemon
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import POOL, MiB, assert_problem, create, upload


def _tree(make_client: MakeClient, *, pool: dict[str, Any] | None = POOL, daemon: dict[str, Any] | None = None,
          **simulator: Any) -> TestClient:
    return make_client(pool=pool, simulator={"kernel_profile": "tree", **simulator}, daemon=daemon or {})


def _active(client: TestClient, name: str, cpus: list[int], memory_bytes: int = 128 * MiB) -> dict[str, Any]:
    create(client, name, cpus=cpus, memory_bytes=memory_bytes)
    loaded = client.post(f"/v1/instances/{name}/load", json={"kernel": upload(client, imagegen.vmlinux())})
    assert loaded.status_code == 200, loaded.text
    started = client.post(f"/v1/instances/{name}/start")
    assert started.status_code == 200 and started.json()["state"] == "ACTIVE", started.text
    body: dict[str, Any] = started.json()
    return body


def test_host_capabilities_of_the_release(make_client: MakeClient) -> None:
    tree = _tree(make_client).get("/v1/host").json()["capabilities"]
    assert (tree["llc_way_masks"], tree["hotplug_active"], tree["console"]) == (False, True, True)
    with_llc = _tree(make_client, llc_way_masks=True).get("/v1/host").json()["capabilities"]
    assert with_llc["llc_way_masks"] is True


def test_patch_of_an_active_instance_adds_cpus_through_the_ack(make_client: MakeClient) -> None:
    client = _tree(make_client)
    web = _active(client, "web", [2])
    reply = client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["resources"]["cpus"] == [2, 3] and reply.json()["state"] == "ACTIVE"
    assert reply.json()["version"] > web["version"]


def test_a_partial_failure_says_what_applied_and_changes_the_record(make_client: MakeClient) -> None:
    # CPU 15 joins the pool after the start, so the spawn never enumerated it (spec 8.7.1 step 4):
    # cpu-add 3 applies, cpu-add 15 fails, and the kernel does not undo the first.
    client = _tree(make_client, pool={**POOL, "cpus": list(range(2, 15))})
    _active(client, "web", [2])
    assert client.put("/v1/pool", json=POOL).status_code == 200
    before = client.get("/v1/instances/web")
    reply = client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3, 15]}})
    problem = assert_problem(reply, 422, "ENODEV")
    assert problem["applied"] == [{"op": "cpu-add", "cpu": 3}]
    assert "1 of 2 operations applied" in problem["detail"]
    after = client.get("/v1/instances/web")
    assert after.json()["resources"]["cpus"] == [2, 3]  # re-read from the kernel
    assert after.headers["ETag"] != before.headers["ETag"]
    free = client.get("/v1/pool").json()["free"]["cpus"]
    assert 15 in free and 3 not in free
    daemon: Daemon = client.app.state.daemon  # type: ignore[attr-defined]
    with transaction(daemon.engine) as session:
        refused = [e for e in repository.events_after(session=session, after_id=0) if e.type == "refused"][-1]
    assert refused.data["errno"] == "ENODEV" and refused.data["applied"] == [{"op": "cpu-add", "cpu": 3}]
    # The ledger follows the kernel: CPU 3 is the instance's now, so another instance cannot have it.
    assert_problem(client.post("/v1/instances", json={"name": "db", "resources": {"cpus": [3],
                                                                                   "memory_bytes": 64 * MiB}}),
                   409, "EBUSY")


def test_removing_the_boot_cpu_of_an_active_instance_is_einval(make_client: MakeClient) -> None:
    client = _tree(make_client)
    _active(client, "web", [2, 3])
    problem = assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [3]}}), 422, "EINVAL")
    assert problem["applied"] == []  # nothing took effect: the record is as it was
    assert client.get("/v1/instances/web").json()["resources"]["cpus"] == [2, 3]


def test_memory_hot_add_to_an_active_instance_is_off_unless_enabled(make_client: MakeClient) -> None:
    client = _tree(make_client)
    _active(client, "web", [2])
    before = client.get("/v1/instances/web")
    problem = assert_problem(client.patch("/v1/instances/web", json={"resources": {"memory_bytes": 256 * MiB}}),
                             409, "EOPNOTSUPP")
    assert "hotplug_memory_active" in problem["detail"]
    assert client.get("/v1/instances/web").headers["ETag"] == before.headers["ETag"]  # a refusal changes nothing
    enabled = _tree(make_client, daemon={"hotplug_memory_active": True})
    _active(enabled, "web", [2])
    grown = enabled.patch("/v1/instances/web", json={"resources": {"memory_bytes": 256 * MiB}})
    assert grown.status_code == 200, grown.text
    assert sum(chunk["bytes"] for chunk in grown.json()["memory"]) == 256 * MiB


def test_memory_hot_add_to_a_loaded_instance_needs_no_setting(make_client: MakeClient) -> None:
    client = _tree(make_client)
    create(client, "web", cpus=[2], memory_bytes=128 * MiB)
    client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    grown = client.patch("/v1/instances/web", json={"resources": {"memory_bytes": 256 * MiB}})
    assert grown.status_code == 200, grown.text


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_llc_requests_are_eopnotsupp_without_the_capability(make_client: MakeClient, profile: str) -> None:
    client = make_client(pool=None, simulator={"kernel_profile": profile, "llc_way_masks": True}
                         if profile == "rfc-v2" else {"kernel_profile": profile})
    assert_problem(client.put("/v1/pool", json={**POOL, "llc_way_mask": 0xFF0}), 409, "EOPNOTSUPP")
    assert client.put("/v1/pool", json=POOL).status_code == 201
    problem = assert_problem(client.post("/v1/instances", json={"name": "web", "resources": {
        "cpus": [2], "memory_bytes": 64 * MiB, "llc_way_mask": 0x30}}), 409, "EOPNOTSUPP")
    assert "llc_way_masks" in problem["detail"]
    assert client.get("/v1/instances").json()["items"] == []
    dts = ("/dts-v1/;\n/ { instances { web { id = <1>; resources { cpus = <2>; memory-bytes = <0x4000000>; "
           "llc-way-mask = <0x30>; }; }; }; };\n")
    if profile == "tree":
        create(client, "db", cpus=[3])
        assert_problem(client.patch("/v1/instances/db", json={"resources": {"llc_way_mask": 0x30}}), 409, "EOPNOTSUPP")
    assert_problem(client.post("/v1/instances", content=dts.encode(), headers={"content-type": "text/x-dts"}),
                   409, "EOPNOTSUPP")
    assert "web" not in [item["name"] for item in client.get("/v1/instances").json()["items"]]


def test_llc_requests_are_accepted_with_the_capability(make_client: MakeClient) -> None:
    client = _tree(make_client, pool=None, llc_way_masks=True)
    assert client.put("/v1/pool", json={**POOL, "llc_way_mask": 0xFF0}).status_code == 201
    created = client.post("/v1/instances", json={"name": "web", "resources": {
        "cpus": [2], "memory_bytes": 64 * MiB, "llc_way_mask": 0x30}})
    assert created.status_code == 201, created.text
    assert created.json()["resources"]["llc_way_mask"] == 0x30


def test_ids_above_2047_are_never_created(make_client: MakeClient) -> None:
    client = _tree(make_client)
    assert_problem(client.post("/v1/instances", json={"name": "web", "id": 2048,
                                                      "resources": {"cpus": [2], "memory_bytes": 64 * MiB}}), 422)
    dts = ("/dts-v1/;\n/ { instances { web { id = <2048>; resources { cpus = <2>; memory-bytes = <0x4000000>; }; "
           "}; }; };\n")
    assert_problem(client.post("/v1/instances", content=dts.encode(), headers={"content-type": "text/x-dts"}),
                   422, "EINVAL")
    assert client.get("/v1/instances").json()["items"] == []
    top = client.post("/v1/instances", json={"name": "top", "id": 2047,
                                             "resources": {"cpus": [2], "memory_bytes": 64 * MiB}})
    assert top.status_code == 201, top.text
    assert client.post("/v1/instances", json={"name": "next", "resources": {"cpus": [3], "memory_bytes": 64 * MiB}}
                       ).json()["id"] == 1  # the lowest free id, never 2048

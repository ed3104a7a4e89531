"""Hot updates (PATCH) and changes the kernel makes on its own."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from mkd.db import repository
from mkd.db.session import transaction
from mkd.services.reconcile import reconcile
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem, create, upload


def tree(make_client: MakeClient, **faults: object) -> TestClient:
    return make_client(simulator={"kernel_profile": "tree", "faults": faults})


def test_patch_under_rfc_v2_is_eopnotsupp(v2_client: TestClient) -> None:
    client = v2_client  # about rfc-v2 (the default is tree)
    create(client, "web", cpus=[2])
    assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}}), 409, "EOPNOTSUPP")


def test_patch_ready_instance_in_kernel_order(make_client: MakeClient) -> None:
    client = tree(make_client)
    web = create(client, "web", cpus=[2, 3], memory_bytes=128 * MiB)
    etag = client.get("/v1/instances/web").headers["ETag"]
    reply = client.patch("/v1/instances/web", json={"resources": {"cpus": [3, 4, 5], "memory_bytes": 256 * MiB}},
                         headers={"If-Match": etag})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["resources"]["cpus"] == [3, 4, 5] and body["resources"]["memory_bytes"] == 256 * MiB
    assert sum(c["bytes"] for c in body["memory"]) == 256 * MiB
    assert body["version"] == web["version"] + 1 and reply.headers["ETag"] != etag
    assert 2 in client.get("/v1/pool").json()["free"]["cpus"]
    stale = client.patch("/v1/instances/web", json={"resources": {"cpus": [3]}}, headers={"If-Match": etag})
    assert_problem(stale, 412)
    other = create(client, "db", cpus=[6])
    body = assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [3, 6]}}), 409, "EBUSY")
    assert "db" in body["detail"]
    assert client.get(f"/v1/instances/{other['id']}").json()["resources"]["cpus"] == [6]


def test_patch_active_instance_nacked_changes_nothing(make_client: MakeClient) -> None:
    # The ACK wait shortened from the release's 10 s: what is checked is the outcome, not the wait.
    client = make_client(simulator={"kernel_profile": "tree", "resource_ack_timeout_s": 0.2,
                                    "faults": {"update_ack": False}})
    create(client, "web", cpus=[2], memory_bytes=128 * MiB)
    client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    assert client.post("/v1/instances/web/start").json()["state"] == "ACTIVE"
    before = client.get("/v1/instances/web")
    # A spawn that never ACKs: the kernel gives up after its ACK wait (spec 8.7), nothing applied.
    problem = assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3]}}),
                             409, "ETIMEDOUT")
    assert problem["applied"] == []
    after = client.get("/v1/instances/web")
    assert after.json()["resources"] == before.json()["resources"]
    assert after.headers["ETag"] == before.headers["ETag"]


def test_patch_loaded_cannot_remove_memory_holding_a_segment(make_client: MakeClient) -> None:
    client = tree(make_client)
    create(client, "web", cpus=[2], memory_bytes=128 * MiB)
    client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    grown = client.patch("/v1/instances/web", json={"resources": {"cpus": [2], "memory_bytes": 160 * MiB}})
    assert grown.status_code == 200, grown.text
    # The kernel removes whole regions (spec 8.6.2): dropping the first 128 MiB region, which
    # holds the kernel segment, is EBUSY (vector M20); the new 32 MiB one holds none and goes.
    assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [2], "memory_bytes": 32 * MiB}}),
                   409, "EBUSY")
    shrunk = client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3], "memory_bytes": 128 * MiB}})
    assert shrunk.status_code == 200, shrunk.text
    assert sum(c["bytes"] for c in shrunk.json()["memory"]) == 128 * MiB
    # A part of a region cannot be named at all.
    assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [2], "memory_bytes": 16 * MiB}}),
                   422, "EINVAL")


def _wait_for_state(client: TestClient, ref: str, state: str) -> dict[str, object]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        body: dict[str, object] = client.get(f"/v1/instances/{ref}").json()
        if body["state"] == state:
            return body
        time.sleep(0.05)
    raise AssertionError(f"{ref} never became {state}: {body}")


def test_a_spawn_that_halts_itself_becomes_loaded(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "tree"}, daemon={"status_poll_interval_s": 0.05})
    web = create(client, "web", cpus=[2])
    client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    client.post("/v1/instances/web/start")
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    daemon.backend.io.kernel.spawn_halt_self(web["id"])  # MK_SYS_HALTED (spec vector 34)
    # The tree release raises no notification (spec 8.1.2): the status poller sees it.
    _wait_for_state(client, "web", "LOADED")
    with transaction(daemon.engine) as session:
        last = [e for e in repository.events_after(session=session, after_id=0) if e.type == "state"][-1]
    assert (last.data["from"], last.data["to"], last.data["cause"]) == ("ACTIVE", "LOADED", "kernel")
    assert reconcile(daemon=daemon) == []  # nothing left for a reconciliation to find


def test_fault_injected_failure_becomes_failed_then_recovers(make_client: MakeClient) -> None:
    client = tree(make_client, fail_after_start=True)
    create(client, "web", cpus=[2])
    client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    client.post("/v1/instances/web/start")
    failed = _wait_for_state(client, "web", "FAILED")
    assert failed["kernel_state"] == "failed"
    assert_problem(client.patch("/v1/instances/web", json={"resources": {"cpus": [2]}}), 409, "EBUSY")
    unloaded = client.post("/v1/instances/web/unload")
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "READY", unloaded.text
    assert client.delete("/v1/instances/web").status_code == 204


def test_patch_is_a_merge_patch_absent_fields_keep_their_values(make_client: MakeClient) -> None:
    """The reproduction of issue 9 (divergence 5): `{"resources": {"cpus": [2, 3, 4]}}` on an
    instance with 256 MiB changed its memory to 0; a merge patch (RFC 7396) changes the CPUs only."""
    client = tree(make_client)
    create(client, "web", cpus=[2, 3], memory_bytes=256 * MiB)
    reply = client.patch("/v1/instances/web", json={"resources": {"cpus": [2, 3, 4]}})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["resources"]["cpus"] == [2, 3, 4]
    assert body["resources"]["memory_bytes"] == 256 * MiB
    assert sum(c["bytes"] for c in body["memory"]) == 256 * MiB
    # memory alone, as application/merge-patch+json: the CPUs stay. (Grown: the kernel removes
    # instance memory by whole regions only, spec 8.6.2.)
    reply = client.patch("/v1/instances/web", content=b'{"resources": {"memory_bytes": 402653184}}',
                         headers={"content-type": "application/merge-patch+json"})
    assert reply.status_code == 200, reply.text
    assert reply.json()["resources"]["cpus"] == [2, 3, 4]
    assert reply.json()["resources"]["memory_bytes"] == 384 * MiB
    # an empty patch changes nothing.
    unchanged = client.patch("/v1/instances/web", json={"resources": {}})
    assert unchanged.status_code == 200, unchanged.text
    assert unchanged.json()["resources"] == reply.json()["resources"]


def test_patch_lists_replace_counts_grow_and_null_removes(make_client: MakeClient) -> None:
    client = tree(make_client)
    create(client, "web", cpus=[2, 3], memory_bytes=64 * MiB)
    replaced = client.patch("/v1/instances/web", json={"resources": {"cpus": [5]}})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["resources"]["cpus"] == [5]  # a list given replaces the list
    grown = client.patch("/v1/instances/web", json={"resources": {"cpu_count": 2}})
    assert grown.status_code == 200, grown.text
    assert grown.json()["resources"]["cpus"][0] == 5 and len(grown.json()["resources"]["cpus"]) == 2
    removed = client.patch("/v1/instances/web", json={"resources": {"cpus": None}})
    assert removed.status_code == 200, removed.text
    assert removed.json()["resources"]["cpus"] == []  # RFC 7396: null removes the field
    assert removed.json()["resources"]["memory_bytes"] == 64 * MiB


@pytest.mark.parametrize(
    "resources",
    [{"memory_bytes": None}, {"memory_bytes": 0}, {"memory_bytes": 4097}, {"cpus": [2], "colour": "red"}],
)
def test_patch_refusals_change_nothing(make_client: MakeClient, resources: dict[str, object]) -> None:
    client = tree(make_client)
    create(client, "web", cpus=[2, 3], memory_bytes=64 * MiB)
    before = client.get("/v1/instances/web").json()
    assert_problem(client.patch("/v1/instances/web", json={"resources": resources}), 422, "EINVAL")
    assert client.get("/v1/instances/web").json() == before


def test_loaded_kimage_says_the_simulator_showed_its_segments(make_client: MakeClient) -> None:
    # DESIGN "Two backends": the simulated kernel exposes its segments, so they are the kernel's.
    client = tree(make_client)
    create(client, "web", cpus=[2], memory_bytes=128 * MiB)
    loaded = client.post("/v1/instances/web/load", json={"kernel": upload(client, imagegen.vmlinux())})
    assert loaded.status_code == 200, loaded.text
    kimage = loaded.json()["kimage"]
    assert kimage["segments_source"] == "kernel"
    assert [s["kind"] for s in kimage["segments"]] and all(s["memsz"] > 0 for s in kimage["segments"])
    assert client.get("/v1/instances/web").json()["kimage"]["segments_source"] == "kernel"

"""A refusal changes nothing (DESIGN "States"), names the instance (DESIGN "Errors"), and a start
the kernel answers with `failed` is FAILED."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import assert_problem, create, upload


def tree(make_client: MakeClient, **faults: object) -> TestClient:
    return make_client(simulator={"kernel_profile": "tree", "faults": faults})


def loaded(client: TestClient, name: str = "web") -> dict[str, Any]:
    create(client, name, cpus=[2])
    reply = client.post(f"/v1/instances/{name}/load", json={"kernel": upload(client, imagegen.vmlinux())})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def test_a_start_the_kernel_refuses_keeps_the_etag(make_client: MakeClient) -> None:
    client = tree(make_client, fail_start="EIO")
    before = loaded(client)
    etag = client.get("/v1/instances/web").headers["ETag"]
    assert_problem(client.post("/v1/instances/web/start", headers={"If-Match": etag}), 502, "EIO")
    after = client.get("/v1/instances/web")
    assert after.headers["ETag"] == etag
    assert after.json() == before
    # The ETag a client holds still works for its next action.
    unloaded = client.post("/v1/instances/web/unload", headers={"If-Match": etag})
    assert unloaded.status_code == 200, unloaded.text


def test_a_load_the_kernel_refuses_after_loading_keeps_the_etag(make_client: MakeClient) -> None:
    client = tree(make_client, fail_load_step="copy")
    create(client, "web", cpus=[2])
    before = client.get("/v1/instances/web")
    kernel = upload(client, imagegen.vmlinux())
    refused = client.post("/v1/instances/web/load", json={"kernel": kernel},
                          headers={"If-Match": before.headers["ETag"]})
    assert_problem(refused, 502, "EIO")
    after = client.get("/v1/instances/web")
    assert after.json() == before.json() and after.headers["ETag"] == before.headers["ETag"]


def test_table_and_daemon_refusals_name_the_instance(v2_client: TestClient) -> None:
    client = v2_client  # about rfc-v2 (the default is tree)
    web = loaded(client)
    for reply, errno_name in (
        (client.delete("/v1/instances/web"), "EBUSY"),               # transition table
        (client.post("/v1/instances/web/load", json={"kernel": web["kimage"]["kernel"]}), "EBUSY"),
        (client.post("/v1/instances/web/stop"), "EINVAL"),           # daemon check: rfc-v2 has no halt
    ):
        body = assert_problem(reply, 409 if errno_name == "EBUSY" else 422, errno_name)
        assert body["instance_id"] == web["id"], body


def test_a_start_the_kernel_answers_failed_is_never_active_and_failed(make_client: MakeClient) -> None:
    client = tree(make_client, fail_after_start=True)
    loaded(client)
    started = client.post("/v1/instances/web/start")
    assert started.status_code == 200, started.text
    body = started.json()
    assert (body["state"], body["kernel_state"]) in {("ACTIVE", "active"), ("FAILED", "failed")}, body


def test_a_refusal_on_a_failed_instance_keeps_its_reason(make_client: MakeClient) -> None:
    client = tree(make_client, fail_after_start=True)
    loaded(client)
    client.post("/v1/instances/web/start")
    deadline = time.monotonic() + 10
    while (failed := client.get("/v1/instances/web")).json()["state"] != "FAILED":
        assert time.monotonic() < deadline, failed.json()
        time.sleep(0.05)
    assert failed.json()["failure"]
    assert client.post("/v1/instances/web/start").status_code >= 400
    again = client.get("/v1/instances/web")
    assert again.json() == failed.json() and again.headers["ETag"] == failed.headers["ETag"]

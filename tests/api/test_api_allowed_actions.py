"""`allowed_actions` in instance bodies: what it lists succeeds over HTTP, what it leaves out is
refused, for both kernel profiles (the dashboard enables its buttons from it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import httpx
import pytest
from fastapi.testclient import TestClient

from mkd.domain.states import Action, InstanceState, allowed_actions
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, create, upload

Profile = Literal["rfc-v2", "tree"]


def request_for(client: TestClient, action: str, body: dict[str, Any], kernel: str) -> httpx.Response:
    """The HTTP request that performs `action` on the instance `body`."""
    path = f"/v1/instances/{body['id']}"
    calls: dict[str, Callable[[], httpx.Response]] = {
        "load": lambda: client.post(f"{path}/load", json={"kernel": kernel}),
        "unload": lambda: client.post(f"{path}/unload", json={"force": False}),
        "unload_force": lambda: client.post(f"{path}/unload", json={"force": True}),
        "start": lambda: client.post(f"{path}/start", json={}),
        "stop": lambda: client.post(f"{path}/stop", json={"force": False}),
        "stop_force": lambda: client.post(f"{path}/stop", json={"force": True}),
        "delete": lambda: client.delete(path),
        "update": lambda: client.patch(path, json={"resources": {"cpus": body["resources"]["cpus"],
                                                                  "memory_bytes": body["resources"]["memory_bytes"]}}),
    }
    assert set(calls) == {action.value for action in Action}
    return calls[action]()


def instance_in(client: TestClient, name: str, state: str, kernel: str) -> dict[str, Any]:
    """A fresh instance brought to READY, LOADED or ACTIVE through the API."""
    body = create(client, name, cpu_count=1, memory_bytes=64 * MiB)
    steps = {"READY": [], "LOADED": ["load"], "ACTIVE": ["load", "start"]}[state]
    for step in steps:
        reply = request_for(client, step, body, kernel)
        assert reply.status_code == 200, reply.text
        body = reply.json()
    assert body["state"] == state
    return body


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_listed_actions_succeed_and_the_others_are_refused(make_client: MakeClient, profile: Profile) -> None:
    client = make_client(simulator={"kernel_profile": profile})
    kernel = upload(client, imagegen.vmlinux())
    capabilities = client.get("/v1/host").json()["capabilities"]
    made = 0
    for state in ("READY", "LOADED", "ACTIVE"):
        shown = instance_in(client, f"probe{made}", state, kernel)
        listed = shown["allowed_actions"]
        remove(client, shown["id"])
        made += 1
        assert listed == allowed_actions(InstanceState(state), capabilities)
        for action in Action:
            body = instance_in(client, f"probe{made}", state, kernel)
            made += 1
            reply = request_for(client, action.value, body, kernel)
            if action.value in listed:
                assert reply.status_code in (200, 204), f"{state} {action}: {reply.text}"
            else:
                assert reply.status_code >= 400, f"{state} {action} was not listed but succeeded"
                assert reply.headers["content-type"].startswith("application/problem+json")
            remove(client, body["id"])


def remove(client: TestClient, instance_id: int) -> None:
    """Take the probe away whatever its state, so the pool stays roomy for the next one."""
    if client.get(f"/v1/instances/{instance_id}").status_code == 404:
        return
    client.post(f"/v1/instances/{instance_id}/unload", json={"force": True})  # 404 ENOENT without a kimage
    assert client.delete(f"/v1/instances/{instance_id}").status_code == 204


def test_every_body_carries_the_list(make_client: MakeClient) -> None:
    client = make_client(simulator={"kernel_profile": "rfc-v2"})
    created = create(client, "web", cpus=[2])
    listed = client.get("/v1/instances").json()["items"][0]
    read = client.get("/v1/instances/web").json()
    assert created["allowed_actions"] == listed["allowed_actions"] == read["allowed_actions"]
    # rfc-v2 has no halt and no hot update.
    assert created["allowed_actions"] == ["load", "delete"]
    dry = client.post("/v1/instances?dry_run=true", json={"name": "db", "resources": {"memory_bytes": 64 * MiB}})
    assert dry.status_code == 200 and dry.json()["allowed_actions"] == ["load", "delete"]


def test_the_capabilities_trim_the_table() -> None:
    without = {"halt": False, "hot_update": False}
    with_all = {"halt": True, "hot_update": True}
    assert allowed_actions(InstanceState.ACTIVE, without) == ["unload_force"]
    assert allowed_actions(InstanceState.ACTIVE, with_all) == ["unload_force", "stop", "stop_force", "update"]
    assert allowed_actions(InstanceState.LOADING, with_all) == []

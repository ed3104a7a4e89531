"""A fleet instance is a declared instance its node's clients cannot change (409 EBUSY "owned
by the fleet"), and no client may set or clear the owner label (422)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from mkd.domain.desired.spec import DeclaredSpec
from mkd.errors import KernelError
from mkd.services import fleet_node
from mkd.testing import imagegen
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem, upload


def document(kernel: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": "web", "labels": labels or {}},
            "spec": {"resources": {"cpu_count": 1, "memory_bytes": 64 * MiB}, "kernel": kernel, "state": "Ready"}}


def test_the_owner_label_is_the_fleets(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    refused = client.put("/v1/instances/web", json=document(kernel, {"mkd.dev/owner": "fleet"}))
    assert_problem(refused, 422)
    assert "reserved for the fleet" in refused.json()["detail"]


def test_the_reschedule_label_is_the_fleets(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    refused = client.put("/v1/instances/web", json=document(kernel, {"mkd.dev/reschedule": "OnNodeLoss"}))
    assert_problem(refused, 422)
    assert "'mkd.dev/reschedule' is reserved for the fleet" in refused.json()["detail"]


def test_local_writes_to_a_fleet_instance_answer_409(make_client: MakeClient) -> None:
    client = make_client()
    kernel = upload(client, imagegen.vmlinux())
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    fleet_node.apply_fleet_instance(daemon, "web", {"app": "x"},
                                    DeclaredSpec.from_json(document(kernel)["spec"]))  # type: ignore[arg-type]
    shown = client.get("/v1/instances/web").json()
    assert shown["labels"] == {"app": "x", "mkd.dev/owner": "fleet", "mkd.dev/reschedule": "Never"}
    capacity = fleet_node.capacity(daemon)
    assert capacity["cpus_free"] == 14  # the fleet's own instance counts as free: the fleet books it
    for reply in (client.put("/v1/instances/web", json=document(kernel)),
                  client.patch("/v1/instances/web", json={"resources": {"memory_bytes": 128 * MiB}}),
                  client.post("/v1/instances/web/start"),
                  client.delete("/v1/instances/web")):
        problem = assert_problem(reply, 409, "EBUSY")
        assert "owned by the fleet" in problem["detail"]
    assert list(fleet_node.fleet_instances(daemon)) == ["web"]
    assert fleet_node.remove_fleet_instance(daemon, "web") is False  # driven down by the reconciler


def test_the_fleet_never_takes_over_a_local_instance(client: TestClient) -> None:
    kernel = upload(client, imagegen.vmlinux())
    local = {"name": "web", "resources": {"cpu_count": 1, "memory_bytes": 64 * MiB}}
    assert client.post("/v1/instances", json=local).status_code == 201
    daemon = client.app.state.daemon  # type: ignore[attr-defined]
    with pytest.raises(KernelError, match="not the fleet's") as refused:
        spec = DeclaredSpec.from_json(document(kernel)["spec"])  # type: ignore[arg-type]
        fleet_node.apply_fleet_instance(daemon, "web", {}, spec)
    assert refused.value.status == 409 and refused.value.errno == "EEXIST"
    assert "mkd.dev/owner" not in client.get("/v1/instances/web").json().get("labels", {})

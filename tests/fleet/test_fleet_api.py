"""The fleet routes (DESIGN "Fleet", API on every node): 404 without `[fleet]`, and how each route
maps the FleetSurface's answers and errors to HTTP. The surface here is an in-memory one: the
etcd-backed surface is tested by the fleet core's own tests (and tests/fleet/test_fleet_api_etcd.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from mkd.errors import Conflict, NotFound
from mkd.fleet.surface import Document, FleetUnavailable
from tests.conftest import MakeClient
from tests.helpers import MiB, assert_problem

SHA = "a" * 64


def document(name: str = "web", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"resources": {"cpu_count": 1, "memory_bytes": 64 * MiB}, "kernel": SHA, **spec}}


class MemoryFleet:
    """A FleetSurface over dicts, recording what the routes hand it."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.cordoned: set[str] = set()
        self.stuck: list[str] = []  # what drain cannot move
        self.unavailable = False
        self.calls: list[tuple[str, Any]] = []

    def _check(self, call: str, argument: Any = None) -> None:
        self.calls.append((call, argument))
        if self.unavailable:
            raise FleetUnavailable("etcd did not answer within 5 s", retry_after_s=7)

    def _with_status(self, name: str) -> Document:
        return {**copy.deepcopy(self.documents[name]), "status": {"node": None, "phase": "Pending"}}

    def _node(self, node: str) -> Document:
        if node not in ("host-a", "host-b"):
            raise NotFound(f"no fleet node {node!r}")
        return {"name": node, "url": f"http://{node}:8080", "cordoned": node in self.cordoned, "live": True}

    async def nodes(self) -> list[Document]:
        self._check("nodes")
        return [self._node("host-a"), self._node("host-b")]

    async def instances(self) -> list[Document]:
        self._check("instances")
        return [self._with_status(name) for name in sorted(self.documents)]

    async def get_instance(self, name: str) -> Document:
        self._check("get", name)
        if name not in self.documents:
            raise NotFound(f"no fleet instance {name!r}")
        return self._with_status(name)

    async def put_instance(self, name: str, document: Document) -> tuple[Document, bool]:
        self._check("put", document)
        created = name not in self.documents
        self.documents[name] = copy.deepcopy(document)
        return self._with_status(name), created

    async def delete_instance(self, name: str) -> Document:
        self._check("delete", name)
        found = await self.get_instance(name)
        del self.documents[name]
        return {**found, "status": {"node": None, "phase": "Pending", "deleted": True}}

    async def drain(self, node: str) -> Document:
        self._check("drain", node)
        record = self._node(node)
        self.cordoned.add(node)
        if self.stuck:
            raise Conflict(f"node {node} is cordoned but cannot be drained: {', '.join(self.stuck)}",
                           extra={"errno": "EBUSY", "instances": self.stuck})
        return {**record, "cordoned": True}

    async def uncordon(self, node: str) -> Document:
        self._check("uncordon", node)
        record = self._node(node)
        self.cordoned.discard(node)
        return {**record, "cordoned": False}

    async def close(self) -> None:
        """What the app's shutdown calls on the fleet."""


ROUTES = [("GET", "/v1/fleet/nodes", None), ("GET", "/v1/fleet/instances", None),
          ("GET", "/v1/fleet/instances/web", None), ("PUT", "/v1/fleet/instances/web", document()),
          ("DELETE", "/v1/fleet/instances/web", None), ("POST", "/v1/fleet/nodes/host-a/drain", None),
          ("POST", "/v1/fleet/nodes/host-a/uncordon", None)]


@pytest.fixture
def fleet() -> MemoryFleet:
    return MemoryFleet()


@pytest.fixture
def node(make_client: MakeClient, fleet: MemoryFleet) -> TestClient:
    client = make_client(pool=None)
    client.app.state.fleet = fleet  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_without_fleet_every_route_is_404_not_configured(make_client: MakeClient, method: str, path: str,
                                                         body: Any) -> None:
    client = make_client(pool=None)
    problem = assert_problem(client.request(method, path, json=body), 404)
    assert problem["type"].endswith("fleet-not-configured") and "[fleet]" in problem["detail"]


def test_put_creates_then_replaces_with_document_and_status(node: TestClient, fleet: MemoryFleet) -> None:
    created = node.put("/v1/fleet/instances/web", json=document(reschedule="OnNodeLoss", node="host-a"))
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/fleet/instances/web"
    body = created.json()
    assert body["status"] == {"node": None, "phase": "Pending"}
    assert body["spec"]["reschedule"] == "OnNodeLoss" and body["metadata"]["labels"] == {"app": "web"}
    # The surface gets what the client wrote: no defaults filled in, no status.
    assert fleet.calls[-1] == ("put", document(reschedule="OnNodeLoss", node="host-a"))
    again = node.put("/v1/fleet/instances/web", json=document(nodeSelector={"zone": "a"}))
    assert again.status_code == 200 and again.json()["spec"]["nodeSelector"] == {"zone": "a"}
    read = node.get("/v1/fleet/instances/web")
    assert read.json() == again.json() and read.headers["etag"] == again.headers["etag"]


def test_put_takes_yaml_and_ignores_a_status_read_back(node: TestClient, fleet: MemoryFleet) -> None:
    text = yaml.safe_dump({**document(), "status": {"node": "host-b", "phase": "Running"}})
    reply = node.put("/v1/fleet/instances/web", content=text, headers={"content-type": "application/yaml"})
    assert reply.status_code == 201, reply.text
    assert "status" not in fleet.calls[-1][1]


@pytest.mark.parametrize(("body", "says"), [
    (document(id=7), "spec.id"),
    (document(reschedule="Always"), "reschedule"),
    (document(node="not a node"), "node"),
    (document(nodeSelector={"zone": 3}), "nodeSelector"),
    (document(name="other"), "is not the name in the path"),
    ({**document(), "kind": "Pool"}, "kind"),
    ({k: v for k, v in document().items() if k != "spec"}, "spec"),
    (document(kernel="not-a-hash"), "kernel"),
    (document(surprise=True), "surprise"),
])
def test_an_invalid_fleet_document_is_422_and_reaches_nothing(node: TestClient, fleet: MemoryFleet,
                                                             body: dict[str, Any], says: str) -> None:
    problem = assert_problem(node.put("/v1/fleet/instances/web", json=body), 422)
    assert says in problem["detail"], problem
    assert fleet.calls == []


def test_bad_names_in_the_path_are_422(node: TestClient, fleet: MemoryFleet) -> None:
    assert_problem(node.get("/v1/fleet/instances/" + "x" * 40), 422)
    assert_problem(node.put("/v1/fleet/instances/12", json=document(name="12")), 422)
    assert_problem(node.post("/v1/fleet/nodes/-bad/drain"), 422)
    assert fleet.calls == []


def test_reads_list_and_unknowns_are_404(node: TestClient) -> None:
    assert node.put("/v1/fleet/instances/web", json=document()).status_code == 201
    assert node.put("/v1/fleet/instances/db", json=document(name="db")).status_code == 201
    listed = node.get("/v1/fleet/instances")
    assert [d["metadata"]["name"] for d in listed.json()["items"]] == ["db", "web"] and listed.headers["etag"]
    assert [n["name"] for n in node.get("/v1/fleet/nodes").json()["items"]] == ["host-a", "host-b"]
    assert_problem(node.get("/v1/fleet/instances/nosuch"), 404)
    assert_problem(node.delete("/v1/fleet/instances/nosuch"), 404)
    assert_problem(node.post("/v1/fleet/nodes/host-z/drain"), 404)


def test_delete_is_202_with_the_document(node: TestClient) -> None:
    assert node.put("/v1/fleet/instances/web", json=document()).status_code == 201
    deleted = node.delete("/v1/fleet/instances/web")
    assert deleted.status_code == 202 and deleted.json()["status"]["deleted"] is True
    assert_problem(node.get("/v1/fleet/instances/web"), 404)


def test_drain_and_uncordon_are_202_with_the_node(node: TestClient, fleet: MemoryFleet) -> None:
    drained = node.post("/v1/fleet/nodes/host-a/drain")
    assert drained.status_code == 202 and drained.json()["cordoned"] is True
    assert node.post("/v1/fleet/nodes/host-a/uncordon").json() == {**drained.json(), "cordoned": False}
    fleet.stuck = ["db"]
    stuck = assert_problem(node.post("/v1/fleet/nodes/host-b/drain"), 409, "EBUSY")
    assert stuck["instances"] == ["db"]


def test_fleet_routes_take_no_idempotency_key(node: TestClient, fleet: MemoryFleet) -> None:
    for _ in range(2):
        reply = node.post("/v1/fleet/nodes/host-a/drain", headers={"Idempotency-Key": "drain-1"})
        assert reply.status_code == 202 and "idempotent-replayed" not in reply.headers
    assert [call for call in fleet.calls if call[0] == "drain"] == [("drain", "host-a")] * 2


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_etcd_unreachable_is_503_with_retry_after(node: TestClient, fleet: MemoryFleet, method: str, path: str,
                                                  body: Any) -> None:
    fleet.unavailable = True
    reply = node.request(method, path, json=body)
    assert_problem(reply, 503)
    assert reply.headers["retry-after"] == "7"

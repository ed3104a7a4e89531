"""The fleet API over HTTP against the real fleet (DESIGN "Fleet"): two simulated daemons on a
private 3-member etcd cluster. A fleet instance PUT through one node is placed on the other, which
never received the kernel upload: that node pulls it from its peer (with the peer token), checks
its sha256, loads and runs it. Then drain, uncordon and delete, all through `/v1/fleet`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess, free_port
from mkd.testing.etcd_cluster import EtcdCluster
from tests.conftest import MakeClient
from tests.fleet.nodes import instance_document, running_nodes, wait_until
from tests.helpers import assert_problem, write_tokens

PEER_TOKEN = "peer-token-of-the-test-fleet-01"


@pytest.fixture
def nodes(etcd_cluster: EtcdCluster, fleet_prefix: str, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    peer_token = write_tokens(tmp_path / "peer-token", PEER_TOKEN)
    with running_nodes(etcd_cluster, fleet_prefix, tmp_path, {"node-a": {}, "node-b": {}}, upload_kernel=False,
                       peer_token=peer_token) as daemons:
        yield daemons


def test_an_instance_put_on_one_node_runs_on_a_peer_that_pulls_its_kernel(nodes: list[DaemonProcess]) -> None:
    node_a, node_b = nodes
    with node_a.client() as a, node_b.client() as b:
        kernel = a.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        assert b.get(f"/v1/images/{kernel}").status_code == 404  # node-b never received the upload

        def both_registered() -> bool:
            items = a.get("/v1/fleet/nodes").json()["items"]
            return sorted(n["name"] for n in items if n.get("capacity", {}).get("cpus_free")) == ["node-a", "node-b"]

        wait_until("both nodes registered with their pools", both_registered)

        created = a.put("/v1/fleet/instances/web", json=instance_document("web", kernel, node="node-b"))
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/v1/fleet/instances/web"
        assert created.json()["spec"]["node"] == "node-b" and "phase" in created.json()["status"]
        again = a.put("/v1/fleet/instances/web", json=instance_document("web", kernel, node="node-b"))
        assert again.status_code == 200  # the same document: nothing changes

        running = wait_until("web Running on node-b", lambda: (doc := b.get("/v1/fleet/instances/web").json())
                             ["status"]["phase"] == "Running" and doc)
        assert running["status"]["node"] == "node-b"
        assert b.get(f"/v1/images/{kernel}/content").content == a.get(f"/v1/images/{kernel}/content").content
        assert b.get("/v1/instances/web").json()["state"] == "ACTIVE"
        assert [d["metadata"]["name"] for d in a.get("/v1/fleet/instances").json()["items"]] == ["web"]

        stuck = assert_problem(a.post("/v1/fleet/nodes/node-b/drain"), 409)
        assert stuck["instances"] == ["web"]  # reschedule: Never cannot move
        cordoned = {n["name"]: n["cordoned"] for n in b.get("/v1/fleet/nodes").json()["items"]}
        assert cordoned == {"node-a": False, "node-b": True}
        uncordoned = a.post("/v1/fleet/nodes/node-b/uncordon")
        assert uncordoned.status_code == 202 and uncordoned.json()["name"] == "node-b"
        assert not uncordoned.json()["cordoned"]

        assert a.delete("/v1/fleet/instances/web").status_code == 202
        wait_until("web gone", lambda: a.get("/v1/fleet/instances/web").status_code == 404)
        wait_until("web gone on node-b", lambda: b.get("/v1/instances/web").status_code == 404)


def test_with_etcd_unreachable_fleet_routes_are_503_with_retry_after(make_client: MakeClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    client: TestClient = make_client(pool=None, fleet={"endpoints": [dead], "node": "lonely",
                                                       "advertise_url": "http://127.0.0.1:1", "request_timeout_s": 0.5})
    for method, path in (("GET", "/v1/fleet/nodes"), ("GET", "/v1/fleet/instances"),
                         ("POST", "/v1/fleet/nodes/lonely/uncordon")):
        reply = client.request(method, path)
        assert_problem(reply, 503)
        assert int(reply.headers["retry-after"]) >= 1
    assert client.get("/v1/instances").status_code == 200  # the node itself keeps serving

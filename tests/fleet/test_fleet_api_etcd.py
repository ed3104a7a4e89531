"""The fleet API over HTTP against the real fleet (DESIGN "Fleet"): two simulated daemons on a
private 3-member etcd cluster. A fleet instance PUT through one node is placed on the other, which
never received the kernel upload: that node pulls it from its peer (with the peer token), checks
its sha256, loads and runs it. Then drain, uncordon and delete, all through `/v1/fleet`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess, free_port
from mkd.testing.etcd_cluster import EtcdCluster
from tests.conftest import MakeClient
from tests.helpers import POOL, MiB, assert_problem, write_tokens

CONFIG = """
[simulator]
kernel_profile = "tree"
halt_ack_timeout_s = 0.5
[reconciler]
poll_interval_s = 0.1
[fleet]
endpoints = {endpoints}
node = "{node}"
advertise_url = "{url}"
prefix = "{prefix}"
lease_ttl_s = 2
peer_token_file = "{peer_token}"
"""
PEER_TOKEN = "peer-token-of-the-test-fleet-01"


def wait_until(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def nodes(etcd_cluster: EtcdCluster, fleet_prefix: str, tmp_path: Path) -> Iterator[list[DaemonProcess]]:
    peer_token = write_tokens(tmp_path / "peer-token", PEER_TOKEN)
    endpoints = "[" + ", ".join(f'"{e}"' for e in etcd_cluster.endpoints) + "]"
    daemons: list[DaemonProcess] = []
    try:
        for name in ("node-a", "node-b"):
            config = tmp_path / f"{name}.toml"
            daemon = DaemonProcess(tmp_path / name, config=config)
            config.write_text(CONFIG.format(endpoints=endpoints, node=name, url=daemon.url, prefix=fleet_prefix,
                                            peer_token=peer_token))
            daemons.append(daemon.start())
        for daemon in daemons:
            with daemon.client() as http:
                assert http.put("/v1/pool", json=POOL).status_code == 201
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


def instance(name: str, kernel: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name},
            "spec": {"resources": {"cpu_count": 2, "memory_bytes": 128 * MiB}, "kernel": kernel, **spec}}


def test_an_instance_put_on_one_node_runs_on_a_peer_that_pulls_its_kernel(nodes: list[DaemonProcess]) -> None:
    node_a, node_b = nodes
    with node_a.client() as a, node_b.client() as b:
        kernel = a.post("/v1/images", content=imagegen.vmlinux()).json()["sha256"]
        assert b.get(f"/v1/images/{kernel}").status_code == 404  # node-b never received the upload

        def both_registered() -> bool:
            items = a.get("/v1/fleet/nodes").json()["items"]
            return sorted(n["name"] for n in items if n.get("capacity", {}).get("cpus_free")) == ["node-a", "node-b"]

        wait_until("both nodes registered with their pools", both_registered)

        created = a.put("/v1/fleet/instances/web", json=instance("web", kernel, node="node-b"))
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/v1/fleet/instances/web"
        assert created.json()["spec"]["node"] == "node-b" and "phase" in created.json()["status"]
        again = a.put("/v1/fleet/instances/web", json=instance("web", kernel, node="node-b"))
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

"""Node loss, partitions and etcd faults (DESIGN "Fleet", fencing) with three real `mkd serve`
processes on the private 3-member etcd: each node reaches every member through its own TCP
proxies (tests/fleet/tcp_proxy.py), so a test can cut one node off from etcd while it lives.

Short timings keep it fast: lease_ttl_s 3, fence_grace_s 1, request_timeout_s 1."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mkd.errors import Conflict
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.fleet.nodes import instance_document, wait_until
from tests.fleet.tcp_proxy import TcpProxy
from tests.fleet.test_fleet_daemons import surface_call
from tests.helpers import POOL, MiB

TTL_S, GRACE_S, REQUEST_S = 3, 1, 1
CONFIG = f"""
[simulator]
kernel_profile = "tree"
halt_ack_timeout_s = 0.5
[reconciler]
poll_interval_s = 0.1
[fleet]
endpoints = {{endpoints}}
node = "{{node}}"
advertise_url = "{{url}}"
prefix = "{{prefix}}"
lease_ttl_s = {TTL_S}
fence_grace_s = {GRACE_S}
request_timeout_s = {REQUEST_S}
"""


def document(name: str, kernel: str, **spec: Any) -> dict[str, Any]:
    """One CPU each: the tests leave their instances behind, and node-1 hosts most of them."""
    return instance_document(name, kernel, resources={"cpu_count": 1, "memory_bytes": 64 * MiB}, **spec)


class Node:
    """One daemon and the proxies its etcd traffic goes through."""

    def __init__(self, root: Path, index: int, cluster: EtcdCluster, prefix: str) -> None:
        self.name = f"node-{index}"
        self.config = root / f"{self.name}.toml"
        self.state_dir = root / self.name
        self.proxies = [TcpProxy(member.client_port) for member in cluster.members]
        self.prefix = prefix
        self.daemon = self._daemon()

    def _daemon(self) -> DaemonProcess:
        daemon = DaemonProcess(self.state_dir, config=self.config)
        endpoints = "[" + ", ".join(f'"{p.url}"' for p in self.proxies) + "]"
        self.config.write_text(CONFIG.format(endpoints=endpoints, node=self.name, url=daemon.url, prefix=self.prefix))
        return daemon

    def restart(self) -> None:
        """A new `mkd serve` on the same state directory (its kernel as it left it)."""
        self.daemon.kill()
        self.daemon = self._daemon().start()

    def partition(self) -> None:
        for proxy in self.proxies:
            proxy.blackhole()

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def states(self) -> dict[str, str]:
        with self.daemon.client(timeout=10) as http:
            return {i["name"]: i["state"] for i in http.get("/v1/instances").json()["items"]}

    def instance(self, name: str) -> dict[str, Any] | None:
        with self.daemon.client(timeout=10) as http:
            found = http.get(f"/v1/instances/{name}")
            return found.json() if found.status_code == 200 else None


@pytest.fixture(scope="module")
def fleet_prefix() -> str:
    return "/mkd-test/faults"


@pytest.fixture(scope="module")
def nodes(etcd_cluster: EtcdCluster, fleet_prefix: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    root = tmp_path_factory.mktemp("faults")
    made = [Node(root, i, etcd_cluster, fleet_prefix) for i in range(3)]
    try:
        boot(made)
        yield made
    finally:
        for node in made:
            node.daemon.stop()
            for proxy in node.proxies:
                proxy.close()


def boot(nodes: list[Node]) -> None:
    """Start every node's daemon, then give each the test pool and kernel."""
    for node in nodes:
        node.daemon.start()
    kernel = imagegen.vmlinux()
    for node in nodes:
        with node.daemon.client() as http:
            assert http.put("/v1/pool", json=POOL).status_code == 201
            assert http.post("/v1/images", content=kernel).status_code in (200, 201)


def kernel_of(node: Node) -> str:
    with node.daemon.client() as http:
        sha: str = http.get("/v1/images").json()["items"][0]["sha256"]
        return sha


def phase(cluster: EtcdCluster, prefix: str, name: str) -> tuple[str, str | None]:
    status = surface_call(cluster, prefix, "get_instance", name)["status"]
    return status["phase"], status["node"]


def place_on_node_1(nodes: list[Node], cluster: EtcdCluster, prefix: str, tag: str) -> tuple[str, str]:
    """An OnNodeLoss instance and a Never one, both Running on node-1 (the others cordoned meanwhile)."""
    kernel = kernel_of(nodes[0])
    mover, stayer = f"{tag}-mover", f"{tag}-stayer"
    for other in ("node-0", "node-2"):
        with contextlib.suppress(Conflict):  # cordoned either way; its Never instances stay
            surface_call(cluster, prefix, "drain", other)
    surface_call(cluster, prefix, "put_instance", mover, document(mover, kernel, reschedule="OnNodeLoss"))
    surface_call(cluster, prefix, "put_instance", stayer, document(stayer, kernel, node="node-1"))
    for name in (mover, stayer):
        wait_until(f"{name} Running on node-1", lambda n=name: phase(cluster, prefix, n) == ("Running", "node-1"))
    for other in ("node-0", "node-2"):
        surface_call(cluster, prefix, "uncordon", other)
    return mover, stayer


def running_elsewhere(nodes: list[Node], cluster: EtcdCluster, prefix: str, name: str) -> Node:
    _, where = wait_until(f"{name} Running on another node", lambda: (
        found := phase(cluster, prefix, name))[0] == "Running" and found[1] != "node-1" and found)
    node = next(n for n in nodes if n.name == where)
    assert node.states()[name] == "ACTIVE"
    return node


def test_a_killed_daemon_loses_its_movable_instances_and_stops_them_before_it_serves(
        nodes: list[Node], etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    mover, stayer = place_on_node_1(nodes, etcd_cluster, fleet_prefix, "kill")
    nodes[1].daemon.kill()  # SIGKILL: its simulated kernel keeps both ACTIVE (simkernel.sqlite3)
    wait_until(f"{stayer} NodeLost", lambda: phase(etcd_cluster, fleet_prefix, stayer) == ("NodeLost", "node-1"))
    running_elsewhere(nodes, etcd_cluster, fleet_prefix, mover)
    assert phase(etcd_cluster, fleet_prefix, stayer) == ("NodeLost", "node-1")  # Never: it waits

    nodes[1].restart()
    # Ready means served: by then the instance that moved away is no longer ACTIVE here.
    back = nodes[1].instance(mover)
    assert back is None or back["state"] != "ACTIVE"
    wait_until(f"{mover} gone from node-1", lambda: nodes[1].instance(mover) is None)
    wait_until(f"{stayer} Running on node-1 again",
               lambda: phase(etcd_cluster, fleet_prefix, stayer) == ("Running", "node-1"))
    assert nodes[1].states()[stayer] == "ACTIVE"


class Sampler:
    """Every daemon's instances, read from each in turn as fast as they answer: the moments at
    which one instance was ACTIVE on two nodes (none are allowed)."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.samples = 0
        self.doubles: list[tuple[str, list[str]]] = []
        self.seen: list[dict[str, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        clients = [n.daemon.client(timeout=10) for n in self.nodes]
        try:
            while not self._stop.is_set():
                sample = {}
                for node, http in zip(self.nodes, clients, strict=True):
                    try:
                        sample[node.name] = {i["name"]: i["state"] for i in http.get("/v1/instances").json()["items"]}
                    except httpx.HTTPError:
                        sample[node.name] = {}
                active: dict[str, list[str]] = {}
                for node_name, states in sample.items():
                    for name, state in states.items():
                        if state == "ACTIVE":
                            active.setdefault(name, []).append(node_name)
                self.doubles += [(name, where) for name, where in active.items() if len(where) > 1]
                self.seen.append(sample)
                self.samples += 1
        finally:
            for http in clients:
                http.close()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_partitioned_node_fences_before_the_leader_moves_its_instances(
        nodes: list[Node], etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    mover, stayer = place_on_node_1(nodes, etcd_cluster, fleet_prefix, "cut")
    with Sampler(nodes) as sampler:
        nodes[1].partition()
        wait_until(f"{mover} fenced on node-1", lambda: (found := nodes[1].instance(mover)) is not None
                   and found["state"] == "LOADED"
                   and any(c["reason"] == "Fenced" for c in found["conditions"]))
        moved_to = running_elsewhere(nodes, etcd_cluster, fleet_prefix, mover)
        assert nodes[1].states()[stayer] == "ACTIVE"  # Never: it keeps running through the outage
        nodes[1].heal()
        wait_until(f"{mover} gone from node-1", lambda: nodes[1].instance(mover) is None)
        wait_until(f"{stayer} Running on node-1",
                   lambda: phase(etcd_cluster, fleet_prefix, stayer) == ("Running", "node-1"))
    assert sampler.samples > 10
    assert sampler.doubles == []
    assert all(s["node-1"].get(stayer) == "ACTIVE" for s in sampler.seen if s["node-1"])
    assert any(s[moved_to.name].get(mover) == "ACTIVE" for s in sampler.seen)


def test_etcd_member_and_quorum_loss(nodes: list[Node], etcd_cluster: EtcdCluster, fleet_prefix: str) -> None:
    mover, stayer = place_on_node_1(nodes, etcd_cluster, fleet_prefix, "quorum")
    kernel = kernel_of(nodes[0])
    etcd_cluster.stop_member(2)
    try:
        surface_call(etcd_cluster, fleet_prefix, "put_instance", "quorum-one-down",
                     document("quorum-one-down", kernel))
        wait_until("an instance placed with one member down",
                   lambda: phase(etcd_cluster, fleet_prefix, "quorum-one-down")[0] == "Running")
        etcd_cluster.stop_member(1)
        wait_until(f"{mover} fenced", lambda: (found := nodes[1].instance(mover)) is not None
                   and found["state"] == "LOADED")
        assert nodes[1].states()[stayer] == "ACTIVE"
        with nodes[0].daemon.client(timeout=REQUEST_S * 5) as http:
            began = time.monotonic()
            refused = http.put("/v1/fleet/instances/quorum-none", json=document("quorum-none", kernel))
            took = time.monotonic() - began
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        assert refused.headers["content-type"] == "application/problem+json"
        assert took < REQUEST_S * 3  # bounded by request_timeout_s (and the app's own overhead)
    finally:
        etcd_cluster.start_member(1)
        etcd_cluster.start_member(2)
    wait_until(f"{mover} Running again", lambda: phase(etcd_cluster, fleet_prefix, mover)[0] == "Running")
    wait_until(f"{stayer} Running", lambda: phase(etcd_cluster, fleet_prefix, stayer) == ("Running", "node-1"))
    wait_until(f"{mover} ACTIVE on its node", lambda: (where := phase(etcd_cluster, fleet_prefix, mover)[1])
               and next(n for n in nodes if n.name == where).states().get(mover) == "ACTIVE")
    with nodes[2].daemon.client() as http:
        assert http.put("/v1/fleet/instances/quorum-back", json=document("quorum-back", kernel)).status_code == 201
    wait_until("a write after quorum is back placed",
               lambda: phase(etcd_cluster, fleet_prefix, "quorum-back")[0] == "Running")


# Last: node-1's rebooted kernel has no pool afterwards.
def test_a_rebooted_host_comes_back_without_what_moved(nodes: list[Node], etcd_cluster: EtcdCluster,
                                                       fleet_prefix: str) -> None:
    mover, stayer = place_on_node_1(nodes, etcd_cluster, fleet_prefix, "boot")
    nodes[1].daemon.kill()
    for kernel_state in nodes[1].state_dir.glob("simkernel.sqlite3*"):  # with its write-ahead log
        kernel_state.unlink()  # the kernel's state is gone with the host
    running_elsewhere(nodes, etcd_cluster, fleet_prefix, mover)
    nodes[1].restart()
    wait_until(f"{mover} gone from node-1", lambda: nodes[1].instance(mover) is None)
    # Never: it stays on node-1 (re-declared there; the rebooted kernel has no pool until one is
    # applied again) and never runs anywhere else.
    assert phase(etcd_cluster, fleet_prefix, stayer)[1] == "node-1"
    assert all(stayer not in node.states() for node in (nodes[0], nodes[2]))
    assert phase(etcd_cluster, fleet_prefix, mover)[0] == "Running"

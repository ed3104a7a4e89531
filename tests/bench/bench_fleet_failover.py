"""Benchmark (issue 17): fencing and failover on three simulated daemons and a private 3-member
etcd, each node reaching etcd through its own TCP proxies (tests/fleet/tcp_proxy.py).

1. Node death: SIGKILL the daemon that runs MOVERS `reschedule: OnNodeLoss` instances; time until
   every one is ACTIVE on another node (its daemon says so), against lease_ttl_s + fence_grace_s
   (goal: at most that plus 5 s).
2. Partition: blackhole the etcd traffic of the node that runs them; time until its daemon shows
   none of them ACTIVE (fenced), against lease_ttl_s (goal: at most that).
"""

from __future__ import annotations

import contextlib
import time

from mkd.errors import Conflict
from mkd.testing.etcd_cluster import EtcdCluster
from tests.bench.measure import BenchResult, scratch_dir, verdict
from tests.fleet.nodes import wait_until
from tests.fleet.test_fleet_daemons import surface_call
from tests.fleet.test_fleet_faults import GRACE_S, TTL_S, Node, boot, document, kernel_of, phase

PREFIX = "/mkd/bench-failover"
MOVERS = 4
POLL_S = 0.02


def place_movers(nodes: list[Node], cluster: EtcdCluster, target: Node, tag: str) -> list[str]:
    kernel = kernel_of(nodes[0])
    others = [n.name for n in nodes if n is not target]
    for other in others:
        with contextlib.suppress(Conflict):
            surface_call(cluster, PREFIX, "drain", other)
    names = [f"{tag}-{i}" for i in range(MOVERS)]
    for name in names:
        surface_call(cluster, PREFIX, "put_instance", name, document(name, kernel, reschedule="OnNodeLoss"))
    for name in names:
        wait_until(f"{name} Running", lambda n=name: phase(cluster, PREFIX, n) == ("Running", target.name), 60)
    for other in others:
        surface_call(cluster, PREFIX, "uncordon", other)
    return names


def active_elsewhere(nodes: list[Node], lost: Node, names: list[str]) -> bool:
    seen: set[str] = set()
    for node in nodes:
        if node is lost:
            continue
        seen |= {name for name, state in node.states().items() if state == "ACTIVE"}
    return set(names) <= seen


def run() -> list[BenchResult]:
    with scratch_dir("fleet-failover") as work:
        cluster = EtcdCluster(work / "etcd").start()
        nodes = [Node(work, i, cluster, PREFIX) for i in range(3)]
        try:
            boot(nodes)
            wait_until("three nodes", lambda: len(surface_call(cluster, PREFIX, "nodes")) == 3, 60)

            names = place_movers(nodes, cluster, nodes[1], "death")
            began = time.monotonic()
            nodes[1].daemon.kill()
            while not active_elsewhere(nodes, nodes[1], names):
                time.sleep(POLL_S)
            death_s = time.monotonic() - began
            nodes[1].restart()

            names = place_movers(nodes, cluster, nodes[2], "cut")
            began = time.monotonic()
            nodes[2].partition()
            while set(names) & {n for n, s in nodes[2].states().items() if s == "ACTIVE"}:
                time.sleep(POLL_S)
            fence_s = time.monotonic() - began
            nodes[2].heal()
        finally:
            for node in nodes:
                node.daemon.stop()
                for proxy in node.proxies:
                    proxy.close()
            cluster.stop()
    bound = TTL_S + GRACE_S
    results = [
        BenchResult(name=f"fleet node death -> {MOVERS} OnNodeLoss instances Active elsewhere",
                    figure=f"{death_s:.2f} s", baseline=f"{bound} s lease_ttl_s + fence_grace_s",
                    ratio=death_s / bound, goal=f"<= {bound + 5} s", verdict=verdict(death_s <= bound + 5),
                    details={"seconds": death_s, "lease_ttl_s": TTL_S, "fence_grace_s": GRACE_S}),
        BenchResult(name=f"fleet partition -> {MOVERS} instances fenced (stopped) on the cut-off node",
                    figure=f"{fence_s:.2f} s", baseline=f"{TTL_S} s lease_ttl_s", ratio=fence_s / TTL_S,
                    goal=f"<= {TTL_S} s", verdict=verdict(fence_s <= TTL_S),
                    details={"seconds": fence_s, "lease_ttl_s": TTL_S}),
    ]
    for result in results:
        print(f"  {result.name}: {result.figure} (baseline {result.baseline})", flush=True)
    return results


if __name__ == "__main__":
    for found in run():
        print(found)

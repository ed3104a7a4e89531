"""`make fleet-soak`: random node kills, partitions and etcd member restarts on three `mkd serve`
processes and a private 3-member etcd, for MKD_FLEET_SOAK_S seconds (default 120). After each step
the fleet must converge — every instance Running and ACTIVE on exactly the node its status names —
and throughout, a sampler reading every daemon's instances must never see one ACTIVE on two nodes.
(A killed daemon answers nothing, so the window fencing leaves — a dead daemon's kernel still
running what moved — is not sampled: deploy/mkd.service closes it, README "Fleet".)
Exit status 0 when no step failed, 1 otherwise."""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from pathlib import Path

from mkd.testing.etcd_cluster import EtcdCluster
from tests.fleet.nodes import wait_until
from tests.fleet.test_fleet_daemons import surface_call
from tests.fleet.test_fleet_faults import TTL_S, Node, Sampler, boot, document, kernel_of

PREFIX = "/mkd/soak"
INSTANCES = 8  # half OnNodeLoss, half Never


def converged(nodes: list[Node], cluster: EtcdCluster) -> bool:
    documents = surface_call(cluster, PREFIX, "instances")
    states: dict[str, dict[str, str]] = {}
    for node in nodes:
        with node.daemon.client(timeout=10) as http:
            answer = http.get("/v1/instances")
        if answer.status_code != 200:
            print(f"  {node.name}: GET /v1/instances {answer.status_code} {answer.text[:200]}", flush=True)
            return False
        states[node.name] = {i["name"]: i["state"] for i in answer.json()["items"]}
    for doc in documents:
        status, name = doc["status"], doc["metadata"]["name"]
        if status["phase"] != "Running" or states.get(status["node"], {}).get(name) != "ACTIVE":
            return False
        if sum(1 for s in states.values() if s.get(name) == "ACTIVE") != 1:
            return False
    return len(documents) == INSTANCES


def main() -> int:
    duration = float(os.environ.get("MKD_FLEET_SOAK_S", "120"))
    rng = random.Random(int(os.environ.get("MKD_FLEET_SOAK_SEED", "17")))
    steps: list[str] = []
    kept = os.environ.get("MKD_FLEET_SOAK_DIR")  # keep the daemons' logs there
    with tempfile.TemporaryDirectory(prefix="mkd-soak-") as scratch:
        work = Path(kept) if kept else Path(scratch)
        cluster = EtcdCluster(work / "etcd").start()
        nodes = [Node(work, i, cluster, PREFIX) for i in range(3)]
        try:
            boot(nodes)
            kernel = kernel_of(nodes[0])
            for i in range(INSTANCES):
                spec = {"reschedule": "OnNodeLoss"} if i % 2 else {"node": nodes[i % 3].name}
                surface_call(cluster, PREFIX, "put_instance", f"soak-{i}", document(f"soak-{i}", kernel, **spec))
            wait_until("the fleet Running", lambda: converged(nodes, cluster), 120)
            ends = time.monotonic() + duration
            with Sampler(nodes) as sampler:
                while time.monotonic() < ends:
                    step = rng.choice(["kill", "partition", "member"])
                    victim = rng.randrange(3)
                    steps.append(f"{step} {victim}")
                    print(f"step {len(steps)}: {step} {victim}", flush=True)
                    if step == "kill":
                        nodes[victim].daemon.kill()
                        time.sleep(rng.uniform(0.5, TTL_S * 2))
                        nodes[victim].restart()
                    elif step == "partition":
                        nodes[victim].partition()
                        time.sleep(rng.uniform(0.5, TTL_S * 2))
                        nodes[victim].heal()
                    else:
                        cluster.stop_member(victim)
                        time.sleep(rng.uniform(0.5, TTL_S))
                        cluster.start_member(victim)
                    wait_until(f"the fleet converged after {step} {victim}", lambda: converged(nodes, cluster), 120)
                    if sampler.doubles:
                        break
            print(f"{len(steps)} steps, {sampler.samples} samples, doubles: {sampler.doubles[:5]}")
            return 0 if not sampler.doubles else 1
        finally:
            for node in nodes:
                node.daemon.stop()
                for proxy in node.proxies:
                    proxy.close()
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main())

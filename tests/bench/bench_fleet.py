"""Benchmark (issue 16): a fleet of simulated daemons on a private 3-member etcd cluster.

1. Placements per second for COUNT instances over the daemons this machine holds (each daemon
   a 1,024-CPU tree machine; the leader places, the agents create them): the instances are PUT
   while every node is cordoned, then all nodes uncordoned at once; against bare etcd
   transactions of the same shape (compare three revisions, write two keys) in the same run.
2. Time from a fleet PUT to Active on a remote node, against a local PUT /v1/instances to
   Active on one daemon (the desired-state engine alone), medians of SAMPLES.
3. etcd traffic per node per minute at rest (the fleet placed and settled), read from etcd's
   own metrics, against the floor: the lease renewals a node must send.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from mkd.fleet.etcd import EtcdClient, mod_is, put_op
from mkd.fleet.keys import FleetKeys
from mkd.fleet.operations import FleetOperations
from mkd.fleet.store import FleetStore, dumps
from mkd.testing import imagegen
from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.etcd_cluster import EtcdCluster
from tests.bench.daemons import BIG_MACHINE, BIG_POOL_STEPS, check
from tests.bench.measure import BenchResult, MiB, median, ms, scratch_dir

COUNT = int(os.environ.get("MKD_BENCH_FLEET_COUNT", "2000"))
DAEMONS = int(os.environ.get("MKD_BENCH_FLEET_DAEMONS", "3"))
SAMPLES = 10
REST_WINDOW_S = float(os.environ.get("MKD_BENCH_FLEET_REST_S", "30"))
LEASE_TTL_S = 10
SETTLE_TIMEOUT_S = 900
PREFIX = "/mkd/v1"
ACTIVE_MEMORY = 48 * MiB  # room for the test vmlinux's kernel segment under strict isolation
PLACED_MEMORY = 16 * MiB


def config(path: Path, daemon: DaemonProcess, cluster: EtcdCluster, node: str) -> Path:
    simulator = "\n".join(f"{k} = {json.dumps(v)}" for k, v in BIG_MACHINE.items())
    endpoints = ", ".join(f'"{e}"' for e in cluster.endpoints)
    path.write_text(f'[simulator]\n{simulator}\n[reconciler]\npoll_interval_s = 0.1\n'
                    f'[fleet]\nendpoints = [{endpoints}]\nnode = "{node}"\nadvertise_url = "{daemon.url}"\n'
                    f'prefix = "{PREFIX}"\nlease_ttl_s = {LEASE_TTL_S}\nstrategy = "spread"\n')
    return path


@contextmanager
def fleet(work: Path) -> Iterator[tuple[EtcdCluster, list[DaemonProcess], str]]:
    with ExitStack() as stack:
        cluster = stack.enter_context(EtcdCluster(work / "etcd"))
        daemons: list[DaemonProcess] = []
        for i in range(DAEMONS):
            daemon = DaemonProcess(work / f"node-{i}", config=work / f"node-{i}.toml")
            config(work / f"node-{i}.toml", daemon, cluster, f"node-{i}")
            daemons.append(daemon.start(timeout=60))
            stack.callback(daemon.stop)
        kernel = imagegen.vmlinux()
        sha = ""
        for daemon in daemons:
            with daemon.client() as http:
                for pool in BIG_POOL_STEPS:
                    check(http.put("/v1/pool", json=pool), 200, 201)
                sha = check(http.post("/v1/images", content=kernel), 200, 201).json()["sha256"]
        yield cluster, daemons, sha


def document(name: str, kernel: str, memory: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name},
            "spec": {"resources": {"cpu_count": 1, "memory_bytes": memory}, "kernel": kernel, **spec}}


async def wait_nodes(surface: FleetOperations, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = await surface.nodes()
        if sum(1 for n in nodes if n.get("capacity", {}).get("cpus_free", 0) > 0) == count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the fleet's nodes did not register with their pools")


async def until_running(client: EtcdClient, keys: FleetKeys, name: str, after: int) -> None:
    async for batch in client.watch(keys.status(name), start_revision=after):
        if any(e.kind == "put" and e.kv.json().get("phase") == "Running" for e in batch):
            return


async def remote_put_to_active(cluster: EtcdCluster, daemons: list[DaemonProcess], kernel: str) -> list[float]:
    client = EtcdClient(cluster.endpoints, timeout_s=10)
    keys = FleetKeys(PREFIX)
    surface = FleetOperations(FleetStore(client, keys))
    try:
        await wait_nodes(surface, len(daemons))
        samples = []
        for i in range(SAMPLES):
            _, revision = await client.range(keys.leader)
            started = time.perf_counter()
            await surface.put_instance(f"remote-{i}", document(f"remote-{i}", kernel, ACTIVE_MEMORY,
                                                                node=f"node-{len(daemons) - 1}"))
            await asyncio.wait_for(until_running(client, keys, f"remote-{i}", revision + 1), 60)
            samples.append(time.perf_counter() - started)
        return samples
    finally:
        await client.close()


def local_put_to_active(daemon: DaemonProcess, kernel: str) -> list[float]:
    samples = []
    with daemon.client() as http:
        for i in range(SAMPLES):
            started = time.perf_counter()
            check(http.put(f"/v1/instances/local-{i}", json=document(f"local-{i}", kernel, ACTIVE_MEMORY)), 201)
            check(http.get(f"/v1/instances/local-{i}/wait", params={"state": "ACTIVE", "timeout_s": 60}), 200)
            samples.append(time.perf_counter() - started)
    return samples


async def placements_per_second(cluster: EtcdCluster, daemons: int,
                                kernel: str) -> tuple[float, float, dict[str, float]]:
    """COUNT fleet instances (state Ready) PUT while every node is cordoned, then every node
    uncordoned at once: placements per second from there to all placed; and the bare rate of
    transactions of the same shape."""
    client = EtcdClient(cluster.endpoints, timeout_s=30)
    keys = FleetKeys(PREFIX)
    surface = FleetOperations(FleetStore(client, keys))
    try:
        for i in range(daemons):
            await client.put(keys.cordon(f"node-{i}"), dumps({"node": f"node-{i}"}))
        semaphore = asyncio.Semaphore(32)

        async def put(i: int) -> None:
            async with semaphore:
                await surface.put_instance(f"p{i:05}", document(f"p{i:05}", kernel, PLACED_MEMORY, state="Ready"))

        started = time.perf_counter()
        await asyncio.gather(*(put(i) for i in range(COUNT)))
        puts_s = time.perf_counter() - started
        await asyncio.sleep(2)  # the leader notes them Pending (cordoned everywhere)
        uncordoned = time.perf_counter()
        await client.delete(keys.cordons, prefix=True)
        while True:
            found, _ = await client.range(keys.placements + "p", prefix=True)
            if len(found) >= COUNT:
                break
            await asyncio.sleep(0.05)
        placed_s = time.perf_counter() - uncordoned

        bare_keys = FleetKeys("/bench-bare")
        bare_started = time.perf_counter()
        for i in range(COUNT):  # the same shape as a placement: three compares, two writes, in sequence
            await client.txn([mod_is(bare_keys.instance(f"b{i}"), "=", 0), mod_is(bare_keys.allocation("n"), ">", -1),
                              mod_is(bare_keys.placement(f"b{i}"), "=", 0)],
                             [put_op(bare_keys.placement(f"b{i}"), dumps({"node": "n"})),
                              put_op(bare_keys.allocation("n"), dumps({"i": i}))])
        bare_s = time.perf_counter() - bare_started
        await client.delete("/bench-bare/", prefix=True)
        return COUNT / placed_s, COUNT / bare_s, {"puts_per_s": COUNT / puts_s, "placed_s": placed_s}
    finally:
        await client.close()


def etcd_counters(cluster: EtcdCluster) -> tuple[float, float]:
    """Requests handled and client bytes (in + out) over every member, from etcd's /metrics."""
    requests = bytes_ = 0.0
    for endpoint in cluster.endpoints:
        for line in httpx.get(endpoint + "/metrics", timeout=10).text.splitlines():
            if line.startswith("grpc_server_handled_total{"):
                requests += float(line.rsplit(" ", 1)[1])
            elif line.startswith(("etcd_network_client_grpc_received_bytes_total",
                                  "etcd_network_client_grpc_sent_bytes_total")):
                bytes_ += float(line.rsplit(" ", 1)[1])
    return requests, bytes_


async def settle(cluster: EtcdCluster, expected: int, quiet_s: float = 5.0) -> float:
    """Wait until every instance's node reports it converged and the keyspace has not changed
    for `quiet_s` (agents done creating, statuses out); returns how long that took."""
    client = EtcdClient(cluster.endpoints, timeout_s=30)
    keys = FleetKeys(PREFIX)
    started = time.perf_counter()
    try:
        while True:
            statuses, _ = await client.range(keys.statuses, prefix=True)
            converged = sum(1 for kv in statuses if (s := kv.json()).get("node")
                            and s.get("generation") is not None and s.get("generation") == s.get("observed_generation"))
            if converged >= expected:
                break
            if time.perf_counter() - started > SETTLE_TIMEOUT_S:
                raise RuntimeError(f"only {converged} of {expected} fleet instances converged")
            await asyncio.sleep(1.0)
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            _, revision = await client.range("/")
            if revision != last:
                last, quiet_since = revision, time.monotonic()
            await asyncio.sleep(0.5)
        return time.perf_counter() - started
    finally:
        await client.close()


def run() -> list[BenchResult]:
    with scratch_dir("fleet") as work, fleet(work) as (cluster, daemons, kernel):
        remote = asyncio.run(remote_put_to_active(cluster, daemons, kernel))
        local = local_put_to_active(daemons[0], kernel)
        rate, bare, phases = asyncio.run(placements_per_second(cluster, len(daemons), kernel))
        phases["converged_after_s"] = asyncio.run(settle(cluster, COUNT + SAMPLES))
        before, before_bytes = etcd_counters(cluster)
        time.sleep(REST_WINDOW_S)
        after, after_bytes = etcd_counters(cluster)
    per_minute = 60 / REST_WINDOW_S / len(daemons)
    requests = (after - before) * per_minute
    traffic = (after_bytes - before_bytes) * per_minute
    # each node renews its lease; the leader also renews its campaign's (shared out over the nodes)
    floor = 60 / (LEASE_TTL_S / 3) * (1 + 1 / len(daemons))
    results = [
        BenchResult(name=f"fleet placements/s ({COUNT} instances, {len(daemons)} daemons)", figure=f"{rate:.0f}/s",
                    baseline=f"{bare:.0f}/s bare etcd txns", ratio=rate / bare, goal="info", verdict="INFO",
                    details={"placements_per_s": rate, "bare_txn_per_s": bare, **phases}),
        BenchResult(name="fleet PUT -> Active on a remote node", figure=ms(median(remote)),
                    baseline=f"{ms(median(local))} local PUT", ratio=median(remote) / median(local), goal="info",
                    verdict="INFO", details={"remote_s": remote, "local_s": local}),
        BenchResult(name="fleet etcd traffic per node per minute at rest", figure=f"{requests:.0f} req, "
                    f"{traffic / 1024:.1f} KiB", baseline=f"{floor:.0f} lease renewals", ratio=requests / floor,
                    goal="info", verdict="INFO", details={"requests_per_min": requests, "bytes_per_min": traffic,
                                                          "window_s": REST_WINDOW_S}),
    ]
    for result in results:
        print(f"  {result.name}: {result.figure} (baseline {result.baseline})", flush=True)
    return results

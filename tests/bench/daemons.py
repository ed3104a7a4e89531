"""Real `mkd serve` processes for the benchmarks, on the small default machine or a big tree one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from mkd.testing.daemon_process import DaemonProcess
from tests.bench.measure import GiB, MiB

# The 1,000-instance benchmarks (issue 4): 1,024 CPUs over 4 NUMA nodes of 16 GiB, profile "tree"
# so an instance's memory is not a u32, and a pool that holds 2,047 instances of INSTANCE_MEMORY.
BIG_CPUS = 1024
BIG_NUMA_NODES = 4
NODE_BYTES = 16 * GiB
CPUS_PER_NODE = BIG_CPUS // BIG_NUMA_NODES
INSTANCE_MEMORY = 16 * MiB
BIG_POOL_BASE = 4 * GiB


def tree_machine(numa_nodes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tree machine of `numa_nodes` nodes (CPUS_PER_NODE CPUs and NODE_BYTES each) and its pool
    steps. Under tree each pool growth is one chunk from the lowest NUMA node with room, and an
    instance's memory must come from its CPUs' node. One big chunk would sit on one node and the
    kernel would refuse instances elsewhere, so the pool grows node by node, each step filling one
    node (node 0 only has what lies above pool_base). CPU 0 stays with the host."""
    cpus = numa_nodes * CPUS_PER_NODE
    machine: dict[str, Any] = {
        "kernel_profile": "tree",
        "cpus": cpus,
        "numa_nodes": numa_nodes,
        "memory_bytes": numa_nodes * NODE_BYTES,
        "pool_base": BIG_POOL_BASE,
        "pool_bytes": numa_nodes * NODE_BYTES - BIG_POOL_BASE,
    }
    steps = [{"cpus": list(range(1, cpus)), "memory_base": BIG_POOL_BASE,
              "memory_bytes": (node + 1) * NODE_BYTES - BIG_POOL_BASE} for node in range(numa_nodes)]
    return machine, steps


# The 1,000-instance benchmarks (issue 4): 1,024 CPUs over 4 NUMA nodes of 16 GiB, profile "tree"
# so an instance's memory is not a u32, and a pool that holds 2,047 instances of INSTANCE_MEMORY
# (1,023 CPUs for instances).
BIG_MACHINE, BIG_POOL_STEPS = tree_machine(BIG_NUMA_NODES)

# The simulator's default machine (16 CPUs, 4 GiB pool at 4 GiB) with a pool for a few instances.
SMALL_POOL: dict[str, Any] = {"cpus": list(range(2, 16)), "memory_base": 4 * GiB, "memory_bytes": 4 * GiB}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path: Path, simulator: dict[str, Any]) -> Path:
    lines = ["[simulator]", *(f"{key} = {_toml_value(value)}" for key, value in simulator.items())]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def running_daemon(workdir: Path, *, simulator: dict[str, Any] | None = None,
                   pool_steps: Sequence[dict[str, Any]] = ()) -> Iterator[DaemonProcess]:
    """A daemon with its own state dir under `workdir`, its pool applied (PUT /v1/pool once per
    step); stopped and its state removed afterwards."""
    state_dir = workdir / "state"
    config = write_config(workdir / "mkd.toml", simulator or {})
    daemon = DaemonProcess(state_dir, config=config)
    daemon.start()
    try:
        with daemon.client() as client:
            for pool in pool_steps:
                check(client.put("/v1/pool", json=pool), 200, 201)
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(state_dir, ignore_errors=True)
        daemon.log.unlink(missing_ok=True)


def fresh_connection_client(base_url: str, timeout: float = 120.0) -> httpx.Client:
    """A client that opens a new connection per request, so every sample costs the same (a fresh
    loopback connection costs ~0.1 ms); bench_keepalive compares it with a kept-alive one."""
    return httpx.Client(base_url=base_url, timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))


def check(reply: httpx.Response, *statuses: int) -> httpx.Response:
    """Fail loudly: a benchmark that timed refusals would report nonsense."""
    if reply.status_code not in statuses:
        raise RuntimeError(f"{reply.request.method} {reply.request.url.path} -> {reply.status_code}: "
                           f"{reply.text[:500]}")
    return reply


def create_json(client: httpx.Client, name: str, *, cpu_count: int = 1,
                memory_bytes: int = INSTANCE_MEMORY) -> httpx.Response:
    body = {"name": name, "resources": {"cpu_count": cpu_count, "memory_bytes": memory_bytes}}
    return client.post("/v1/instances", json=body)

"""Issue 15: reads at the floor. `wrk -t2 -c16` against the daemon's read endpoints and against a
bare FastAPI app serving the same bytes on the same uvicorn/uvloop/httptools, in the same run.

The daemon has the whole middleware stack (auth, cross-site guard, audit, idempotency, metrics,
limits) and a tree machine of 1,024 CPUs over 4 NUMA nodes with 1,000 instances from one device
tree plan, then 2,048 CPUs with 2,047 instances. Goal per URL: at least 0.5x the bare endpoint's
requests/s, and p99 at or under max(20 ms, 2x the bare endpoint's p99).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from mkd.testing.daemon_process import DaemonProcess
from tests.bench.bare_endpoint import bare_endpoint
from tests.bench.bench_plan import DTS_HEADERS
from tests.bench.daemons import INSTANCE_MEMORY, NODE_BYTES, check, running_daemon
from tests.bench.measure import BenchResult, GiB, scratch_dir, verdict
from tests.bench.wrk import DURATION, WrkResult, run_wrk

NUMA_NODES = 4
POOL_BASE = 4 * GiB
RATIO_GOAL = 0.5
P99_FLOOR_S = 0.020
QUICK = os.environ.get("MKD_BENCH_QUICK") == "1"
# (instances, CPUs): one CPU each, CPU 0 stays with the host.
SIZES = ((1000, 1024),) if QUICK else ((1000, 1024), (2047, 2048))


def machine(cpus: int) -> dict[str, Any]:
    return {"kernel_profile": "tree", "cpus": cpus, "numa_nodes": NUMA_NODES,
            "memory_bytes": NUMA_NODES * NODE_BYTES, "pool_base": POOL_BASE,
            "pool_bytes": NUMA_NODES * NODE_BYTES - POOL_BASE}


def pool_steps(cpus: int) -> list[dict[str, Any]]:
    # Node by node, as tests.bench.daemons.BIG_POOL_STEPS explains (tree: one chunk per growth).
    return [{"cpus": list(range(1, cpus)), "memory_base": POOL_BASE,
             "memory_bytes": (node + 1) * NODE_BYTES - POOL_BASE} for node in range(NUMA_NODES)]


def plan_dts(count: int) -> bytes:
    nodes = "".join(
        f'instance-create@{i:x} {{ instance-name = "r{i}"; id = <{i}>; '
        f"resources {{ cpus = /bits/ 64 <{i}>; memory-bytes = /bits/ 64 <{INSTANCE_MEMORY:#x}>; }}; }};\n"
        for i in range(1, count + 1))
    return ('/dts-v1/;\n/ { fragment@0 { target-path = "/instances"; __overlay__ {\n'
            + nodes + "}; }; };\n").encode()


def read_urls(count: int) -> list[tuple[str, str]]:
    middle = count // 2
    return [
        ("GET /v1/instances (page of 100)", "/v1/instances?limit=100"),
        ("GET /v1/instances (page of 1,000)", "/v1/instances?limit=1000"),
        (f"GET /v1/instances/{middle}", f"/v1/instances/{middle}"),
        (f"GET /v1/instances/r{middle}", f"/v1/instances/r{middle}"),
        ("GET /v1/pool", "/v1/pool"),
        ("GET /v1/host", "/v1/host"),
        ("GET /healthz", "/healthz"),
    ]


@dataclass(frozen=True)
class ReadFigure:
    label: str
    body_bytes: int
    daemon: WrkResult
    bare: WrkResult

    @property
    def ratio(self) -> float:
        return self.daemon.requests_per_s / self.bare.requests_per_s

    @property
    def p99_goal_s(self) -> float:
        return max(P99_FLOOR_S, 2 * self.bare.p99_s)

    @property
    def ok(self) -> bool:
        return (self.ratio >= RATIO_GOAL and self.daemon.p99_s <= self.p99_goal_s
                and self.daemon.bad_responses == 0)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def measure_url(workdir: Path, base_url: str, label: str, url: str) -> ReadFigure:
    reply = check(httpx.get(base_url + url, timeout=60), 200)
    path = url.split("?", 1)[0]
    daemon = run_wrk(base_url + url)
    with bare_endpoint(workdir, method="GET", path=path, status=200, body=reply.content) as bare_url:
        bare = run_wrk(bare_url + url)
    figure = ReadFigure(label=label, body_bytes=len(reply.content), daemon=daemon, bare=bare)
    print(f"  {label:<36} {len(reply.content) / 1024:7.1f} KiB  mkd {daemon.requests_per_s:8.0f} req/s "
          f"p50 {_ms(daemon.p50_s):>9} p99 {_ms(daemon.p99_s):>9} | bare {bare.requests_per_s:8.0f} req/s "
          f"p50 {_ms(bare.p50_s):>9} p99 {_ms(bare.p99_s):>9} | {figure.ratio:.2f}x "
          f"{'ok' if figure.ok else 'MISS'}" + (f" ({daemon.bad_responses} bad)" if daemon.bad_responses else ""),
          flush=True)
    return figure


@contextmanager
def populated_daemon(workdir: Path, instances: int, cpus: int) -> Iterator[DaemonProcess]:
    with running_daemon(workdir, simulator=machine(cpus), pool_steps=pool_steps(cpus)) as daemon, \
            httpx.Client(base_url=daemon.url, timeout=600) as client:
        check(client.post("/v1/instances", content=plan_dts(instances), headers=DTS_HEADERS), 201)
        yield daemon


def result_of(figure: ReadFigure, size: str) -> BenchResult:
    d, b = figure.daemon, figure.bare
    return BenchResult(
        name=f"{figure.label}, {size}",
        figure=f"{d.requests_per_s:.0f} req/s, p50 {_ms(d.p50_s)}, p99 {_ms(d.p99_s)}",
        baseline=f"bare {b.requests_per_s:.0f} req/s, p99 {_ms(b.p99_s)}",
        ratio=figure.ratio, goal=f">= {RATIO_GOAL}x, p99 <= {_ms(figure.p99_goal_s)}", verdict=verdict(figure.ok),
        details={"body_bytes": figure.body_bytes, "daemon": d.__dict__, "bare": b.__dict__, "wrk_duration": DURATION},
    )


def run() -> list[BenchResult]:
    results: list[BenchResult] = []
    for instances, cpus in SIZES:
        size = f"{instances} instances / {cpus} CPUs"
        print(f"  -- tree, {size}, wrk -t2 -c16 -d{DURATION}", flush=True)
        with scratch_dir(f"reads-{instances}") as workdir, populated_daemon(workdir, instances, cpus) as daemon:
            for label, path in read_urls(instances):
                results.append(result_of(measure_url(workdir, daemon.url, label, path), size))
    return results

"""Benchmark 7 (DESIGN "Testing notes", issue E): daemon RSS with 2,047 live instances, and RSS
after many create/delete cycles (10,000 when they fit the time budget).

Both are bounded: the 2,047 instances arrive as two device-tree plans, and the cycles stop at
CYCLE_BUDGET_S, saying how many ran. Growth after the cycles that does not level off is a leak.
"""

from __future__ import annotations

import time

import httpx

from tests.bench.bench_plan import DTS_HEADERS
from tests.bench.daemons import (
    BIG_CPUS,
    BIG_MACHINE,
    BIG_POOL_STEPS,
    INSTANCE_MEMORY,
    SMALL_POOL,
    check,
    create_json,
    fresh_connection_client,
    running_daemon,
)
from tests.bench.measure import BenchResult, read_status_kib, scratch_dir

MAX_INSTANCES = 2047
CYCLES = 10_000
CYCLE_BUDGET_S = 40.0
CPU_INSTANCES = BIG_CPUS - 1  # one CPU each; the rest hold memory only


def plan_dts(first_id: int, last_id: int) -> bytes:
    """A tree overlay creating ids first..last: CPU id for the first CPU_INSTANCES, memory for all."""
    nodes = []
    for instance_id in range(first_id, last_id + 1):
        cpus = f"cpus = /bits/ 64 <{instance_id}>; " if instance_id <= CPU_INSTANCES else ""
        nodes.append(f'instance-create@{instance_id:x} {{ instance-name = "live{instance_id}"; id = <{instance_id}>; '
                     f"resources {{ {cpus}memory-bytes = /bits/ 64 <{INSTANCE_MEMORY:#x}>; }}; }};\n")
    return ('/dts-v1/;\n/ { fragment@0 { target-path = "/instances"; __overlay__ {\n'
            + "".join(nodes) + "}; }; };\n").encode()


def rss_mib(pid: int) -> float:
    return read_status_kib(pid, "VmRSS") / 1024


def live_instances_rss() -> BenchResult:
    with scratch_dir("rss-live") as workdir:
        with running_daemon(workdir, simulator=BIG_MACHINE, pool_steps=BIG_POOL_STEPS) as daemon, \
                fresh_connection_client(daemon.url, timeout=600) as client:
            assert daemon.proc is not None
            check(client.get("/v1/instances"), 200)
            before = rss_mib(daemon.proc.pid)
            half = MAX_INSTANCES // 2
            for first, last in ((1, half), (half + 1, MAX_INSTANCES)):
                check(client.post("/v1/instances", content=plan_dts(first, last), headers=DTS_HEADERS), 201)
            check(client.get("/v1/instances", params={"limit": 1000}), 200)  # and serve a big page once
            live = rss_mib(daemon.proc.pid)
            hwm = read_status_kib(daemon.proc.pid, "VmHWM") / 1024
    print(f"  {MAX_INSTANCES} live instances: RSS {live:.1f} MiB (empty pool {before:.1f} MiB, "
          f"+{(live - before) * 1024 / MAX_INSTANCES:.1f} KiB per instance), VmHWM {hwm:.1f} MiB")
    return BenchResult(
        name=f"RSS with {MAX_INSTANCES} live instances", figure=f"{live:.1f} MiB", baseline=f"empty {before:.1f} MiB",
        ratio=live / before, goal="report", verdict="INFO",
        details={"rss_before_mib": before, "rss_live_mib": live, "vm_hwm_mib": hwm},
    )


def cycle(client: httpx.Client, index: int) -> None:
    check(create_json(client, f"cycle{index % 2}", memory_bytes=INSTANCE_MEMORY), 201)
    check(client.delete(f"/v1/instances/cycle{index % 2}"), 204)


def create_delete_rss() -> BenchResult:
    with scratch_dir("rss-cycles") as workdir:
        with running_daemon(workdir, pool_steps=[SMALL_POOL]) as daemon, \
                fresh_connection_client(daemon.url) as client:
            assert daemon.proc is not None
            for index in range(100):  # warm-up: caches and pools reach their working size
                cycle(client, index)
            before = rss_mib(daemon.proc.pid)
            checkpoints: list[tuple[int, float]] = []
            started = time.monotonic()
            done = 0
            while done < CYCLES and time.monotonic() - started < CYCLE_BUDGET_S:
                cycle(client, done)
                done += 1
                if done % 1000 == 0:
                    checkpoints.append((done, rss_mib(daemon.proc.pid)))
            elapsed = time.monotonic() - started
            after = rss_mib(daemon.proc.pid)
    per_cycle_kib = (after - before) * 1024 / max(done, 1)
    note = "" if done == CYCLES else f" (time budget {CYCLE_BUDGET_S:.0f} s reached)"
    print(f"  {done} create/delete cycles in {elapsed:.1f} s{note}: RSS {before:.1f} -> {after:.1f} MiB "
          f"({per_cycle_kib:.2f} KiB per cycle); checkpoints " + ", ".join(f"{n}: {m:.1f}" for n, m in checkpoints))
    return BenchResult(
        name=f"RSS after {done} create/delete cycles", figure=f"{after:.1f} MiB", baseline=f"{before:.1f} MiB before",
        ratio=after / before, goal="report", verdict="INFO",
        details={"cycles": done, "target_cycles": CYCLES, "elapsed_s": elapsed, "rss_before_mib": before,
                 "rss_after_mib": after, "checkpoints": checkpoints, "per_cycle_kib": per_cycle_kib},
    )


def run() -> list[BenchResult]:
    return [live_instances_rss(), create_delete_rss()]

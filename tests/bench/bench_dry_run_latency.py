"""Benchmark 6 (issue 4): p99 of POST /v1/instances?dry_run=true with 1,000 instances in place, vs a
bare FastAPI endpoint answering the same request with the real response's pre-serialised bytes.

The 1,000 instances arrive as one device-tree plan (bench_plan's), which is the fast way in.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.bench.bare_endpoint import bare_endpoint
from tests.bench.bench_plan import DTS_HEADERS, PLAN_SIZE, plan_dts
from tests.bench.daemons import (
    BIG_MACHINE,
    BIG_POOL_STEPS,
    INSTANCE_MEMORY,
    check,
    fresh_connection_client,
    running_daemon,
)
from tests.bench.measure import BenchResult, median, ms, percentile, scratch_dir, time_each

NAME = "dry-run create p99 at 1,000 instances"
REPEAT = 200
PROBE = {"name": "probe", "resources": {"cpu_count": 1, "memory_bytes": INSTANCE_MEMORY}}
DRY_RUN_URL = "/v1/instances?dry_run=true"


def dry_run_seconds(client: httpx.Client) -> list[float]:
    body = json.dumps(PROBE).encode()
    headers = {"content-type": "application/json"}
    check(client.post(DRY_RUN_URL, content=body, headers=headers), 200)  # warm-up
    return time_each(lambda: check(client.post(DRY_RUN_URL, content=body, headers=headers), 200), REPEAT)


def real_and_bare(workdir: Path) -> tuple[list[float], list[float], bytes]:
    with running_daemon(workdir, simulator=BIG_MACHINE, pool_steps=BIG_POOL_STEPS) as daemon, \
            fresh_connection_client(daemon.url, timeout=600) as client:
        check(client.post("/v1/instances", content=plan_dts(PLAN_SIZE).encode(), headers=DTS_HEADERS), 201)
        real = dry_run_seconds(client)
        response = check(client.post(DRY_RUN_URL, json=PROBE), 200).content
    # The daemon is stopped first, so the bare app does not share the two cores with it.
    with bare_endpoint(workdir, method="POST", path="/v1/instances", status=200, body=response) as url, \
            fresh_connection_client(url) as client:
        bare = dry_run_seconds(client)
    return real, bare, response


def run() -> BenchResult:
    with scratch_dir("dry-run") as workdir:
        real, bare, response = real_and_bare(workdir)
    real_p99, bare_p99 = percentile(real, 99), percentile(bare, 99)
    ratio = real_p99 / bare_p99
    print(f"  dry run p50 {ms(median(real))} p99 {ms(real_p99)}; bare endpoint p50 {ms(median(bare))} "
          f"p99 {ms(bare_p99)}; p99 ratio {ratio:.1f}x (N={REPEAT}, {len(response)} response bytes)")
    return BenchResult(
        name=NAME, figure=f"p99 {ms(real_p99)}", baseline=f"bare p99 {ms(bare_p99)}", ratio=ratio, goal="report",
        verdict="INFO",
        details={"repeat": REPEAT, "real_p50_s": median(real), "bare_p50_s": median(bare), "real_s": real,
                 "bare_s": bare},
    )

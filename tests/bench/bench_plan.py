"""Benchmark 4 (issue 4): validate (dry run) and apply a 1,000-instance plan sent as one device tree.

The plan is a tree overlay in DTS text (POST /v1/instances, text/x-dts), one CPU and
INSTANCE_MEMORY per instance; every request uses a new connection (daemons.fresh_connection_client).
Baselines measured in the same run: the same number of trivial GET /healthz requests (what 1,000
round trips cost), and a bare FastAPI endpoint answering the same DTS body with the real dry run's
pre-serialised response (what the HTTP layer alone costs).
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from mkd.devicetree.dts import dts_to_dtb
from tests.bench.bare_endpoint import bare_endpoint
from tests.bench.daemons import (
    BIG_MACHINE,
    BIG_POOL_STEPS,
    INSTANCE_MEMORY,
    check,
    fresh_connection_client,
    running_daemon,
)
from tests.bench.measure import BenchResult, median, ms, scratch_dir, time_each

PLAN_SIZE = 1000
DRY_RUNS = 3
DTS_HEADERS = {"content-type": "text/x-dts"}
DTB_HEADERS = {"content-type": "application/x-dtb"}


def instance_create_dts(index: int) -> str:
    # Ids, names and CPUs are explicit: a plan an operator would write, with CPU index+1 so CPU 0
    # stays with the host and the instances spread over all four NUMA nodes.
    return (
        f"      instance-create@{index + 1:x} {{\n"
        f'        instance-name = "plan{index}";\n'
        f"        id = <{index + 1}>;\n"
        f"        resources {{\n"
        f"          cpus = /bits/ 64 <{index + 1}>;\n"
        f"          memory-bytes = /bits/ 64 <{INSTANCE_MEMORY:#x}>;\n"
        f"        }};\n"
        f"      }};\n"
    )


def plan_dts(count: int) -> str:
    creates = "".join(instance_create_dts(index) for index in range(count))
    return (
        "/dts-v1/;\n/ {\n  fragment@0 {\n    target-path = \"/instances\";\n    __overlay__ {\n"
        f"{creates}    }};\n  }};\n}};\n"
    )


def post_seconds(client: httpx.Client, url: str, body: bytes, headers: dict[str, str], status: int) -> float:
    started = time.perf_counter()
    reply = check(client.post(url, content=body, headers=headers), status)
    elapsed = time.perf_counter() - started
    if len(reply.json()["items"]) != PLAN_SIZE:
        raise RuntimeError(f"the plan answered {len(reply.json()['items'])} items, not {PLAN_SIZE}")
    return elapsed


def bare_seconds(workdir: Path, dts: bytes, response: bytes) -> float:
    with bare_endpoint(workdir, method="POST", path="/v1/instances", status=200, body=response) as url, \
            fresh_connection_client(url) as client:
        client.post("/v1/instances", content=dts, headers=DTS_HEADERS)  # warm-up
        return median(time_each(lambda: client.post("/v1/instances", content=dts, headers=DTS_HEADERS), DRY_RUNS))


def run() -> list[BenchResult]:
    dts_text = plan_dts(PLAN_SIZE)
    dts = dts_text.encode()
    dtb = dts_to_dtb(dts_text)
    with scratch_dir("plan") as workdir:
        with running_daemon(workdir, simulator=BIG_MACHINE, pool_steps=BIG_POOL_STEPS) as daemon, \
                fresh_connection_client(daemon.url, timeout=600) as client:
            healthz = time_each(lambda: check(client.get("/healthz"), 200), PLAN_SIZE)
            dry_url = "/v1/instances?dry_run=true"
            dry_runs = [post_seconds(client, dry_url, dts, DTS_HEADERS, 200) for _ in range(DRY_RUNS)]
            dry_response = client.post(dry_url, content=dts, headers=DTS_HEADERS).content
            dtb_dry_runs = [post_seconds(client, dry_url, dtb, DTB_HEADERS, 200) for _ in range(DRY_RUNS)]
            apply = post_seconds(client, "/v1/instances", dts, DTS_HEADERS, 201)
            listed = check(client.get("/v1/instances", params={"limit": 1000}), 200).json()["items"]
            if len(listed) != PLAN_SIZE:
                raise RuntimeError(f"{len(listed)} instances listed after applying the plan")
        bare = bare_seconds(workdir, dts, dry_response)
    healthz_total = sum(healthz)
    dry = median(dry_runs)
    dtb_dry = median(dtb_dry_runs)
    print(f"  plan: {len(dts) / 1024:.0f} KiB DTS, {len(dtb) / 1024:.0f} KiB DTB, {PLAN_SIZE} instances")
    print(f"  dry run (DTS) median {ms(dry)}, (DTB) {ms(dtb_dry)}; apply {ms(apply)}")
    print(f"  baselines: {PLAN_SIZE} x GET /healthz {ms(healthz_total)}; bare endpoint, same bytes {ms(bare)}")
    print(f"  dry run {dry / healthz_total:.2f}x healthz, {dry / bare:.1f}x bare; "
          f"apply {apply / healthz_total:.2f}x healthz, {apply / bare:.1f}x bare")
    shared = {"healthz_total_s": healthz_total, "bare_endpoint_s": bare, "dts_bytes": len(dts),
              "dtb_bytes": len(dtb), "response_bytes": len(dry_response)}
    baseline = f"{PLAN_SIZE} x GET /healthz {ms(healthz_total)}"
    return [
        BenchResult(name=f"{PLAN_SIZE}-instance plan, dry run (DTS)", figure=ms(dry), baseline=baseline,
                    ratio=dry / healthz_total, goal="report", verdict="INFO",
                    details={**shared, "dry_run_s": dry_runs, "dtb_dry_run_s": dtb_dry_runs,
                             "ratio_to_bare": dry / bare}),
        BenchResult(name=f"{PLAN_SIZE}-instance plan, apply (DTS)", figure=ms(apply), baseline=baseline,
                    ratio=apply / healthz_total, goal="report", verdict="INFO",
                    details={**shared, "apply_s": apply, "ratio_to_bare": apply / bare}),
    ]

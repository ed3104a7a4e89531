"""Benchmark 3: latency of loading a vmlinux plus a 64 MiB initrd into an instance (then unloading
it), against copying the same two files with shutil.copyfile.

A load reads both images, lays out the segments and checks them against the instance pool; a file
copy is the least work that touches the same bytes.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx

from mkd.testing.imagegen import initrd, vmlinux, write_file, write_sized
from tests.bench.bench_upload import file_chunks
from tests.bench.daemons import SMALL_POOL, check, fresh_connection_client, running_daemon
from tests.bench.measure import BenchResult, MiB, median, ms, percentile, scratch_dir, skipped, space_problem

NAME = "load vmlinux + 64 MiB initrd"
REPEAT = 30
INITRD_SIZE = 64 * MiB
INSTANCE = {"name": "bench-load", "resources": {"cpu_count": 2, "memory_bytes": 512 * MiB}}


def upload(client: httpx.Client, path: Path) -> str:
    headers = {"content-type": "application/octet-stream", "content-length": str(path.stat().st_size)}
    reply = check(client.post("/v1/images", content=file_chunks(path), headers=headers), 200, 201)
    sha256: str = reply.json()["sha256"]
    return sha256


def load_unload_seconds(client: httpx.Client, body: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    check(client.post("/v1/instances/bench-load/load", json=body), 200)
    loaded = time.perf_counter()
    check(client.post("/v1/instances/bench-load/unload", json={}), 200)
    return loaded - started, time.perf_counter() - loaded


def copy_seconds(sources: list[Path], target_dir: Path) -> float:
    started = time.perf_counter()
    for source in sources:
        shutil.copyfile(source, target_dir / source.name)
    return time.perf_counter() - started


def run() -> BenchResult:
    goal = "report"
    with scratch_dir("load") as workdir:
        # Images, their stored copies in the daemon, and the baseline's copies.
        problem = space_problem(workdir, 3 * (INITRD_SIZE + 64 * MiB))
        if problem:
            return skipped(NAME, goal, problem)
        kernel = write_file(workdir / "vmlinux", vmlinux())
        ramdisk = write_sized(workdir / "initrd.img", initrd("cpio", 4096), INITRD_SIZE)
        with running_daemon(workdir, pool_steps=[SMALL_POOL]) as daemon, fresh_connection_client(daemon.url) as client:
            body = {"kernel": upload(client, kernel), "initrd": upload(client, ramdisk), "cmdline": "console=ttyS0"}
            check(client.post("/v1/instances", json=INSTANCE), 201)
            load_unload_seconds(client, body)  # warm-up: first-use imports and page cache
            timings = [load_unload_seconds(client, body) for _ in range(REPEAT)]
        copies = workdir / "copies"
        copies.mkdir()
        copy_seconds([kernel, ramdisk], copies)  # same warm-up for the baseline
        copy_times = [copy_seconds([kernel, ramdisk], copies) for _ in range(REPEAT)]
    load_times = [load for load, _ in timings]
    unload_times = [unload for _, unload in timings]
    load_p50, load_p99 = median(load_times), percentile(load_times, 99)
    copy_p50, copy_p99 = median(copy_times), percentile(copy_times, 99)
    ratio = load_p50 / copy_p50
    print(f"  load p50 {ms(load_p50)} p99 {ms(load_p99)} (unload p50 {ms(median(unload_times))}); "
          f"copyfile p50 {ms(copy_p50)} p99 {ms(copy_p99)}; p50 ratio {ratio:.1f}x, "
          f"p99 ratio {load_p99 / copy_p99:.1f}x (N={REPEAT})")
    return BenchResult(
        name=NAME, figure=f"p50 {ms(load_p50)} / p99 {ms(load_p99)}",
        baseline=f"copyfile p50 {ms(copy_p50)} / p99 {ms(copy_p99)}", ratio=ratio, goal=goal, verdict="INFO",
        details={"repeat": REPEAT, "load_s": load_times, "unload_s": unload_times, "copyfile_s": copy_times,
                 "p99_ratio": load_p99 / copy_p99},
    )

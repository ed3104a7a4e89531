"""Benchmark 2: how much the daemon's resident memory grows while it receives a 1 GiB upload.

The store streams to disk, so growth should stay near the size of the in-flight buffers.
"""

from __future__ import annotations

from mkd.testing.imagegen import initrd, write_sized
from tests.bench.bench_upload import upload_seconds
from tests.bench.daemons import running_daemon
from tests.bench.measure import (
    BenchResult,
    GiB,
    MiB,
    RssSampler,
    read_status_kib,
    scratch_dir,
    skipped,
    space_problem,
    verdict,
)

NAME = "daemon RSS growth, 1 GiB upload"
GOAL_MIB = 64
SIZE = 1 * GiB
WARM_UP_SIZE = 8 * MiB


def run() -> BenchResult:
    goal = f"< {GOAL_MIB} MiB"
    with scratch_dir("upload-rss") as workdir:
        problem = space_problem(workdir, 2 * SIZE + WARM_UP_SIZE)
        if problem:
            return skipped(NAME, goal, problem)
        image = write_sized(workdir / "image.bin", initrd("gzip", 4096), SIZE)
        warm_up = write_sized(workdir / "warm-up.bin", initrd("cpio", 4096), WARM_UP_SIZE)
        with running_daemon(workdir) as daemon:
            assert daemon.proc is not None
            pid = daemon.proc.pid
            # A small upload first, so lazily imported code and the thread pool count as baseline.
            upload_seconds(daemon.url, warm_up)
            rss_before = read_status_kib(pid, "VmRSS")
            hwm_before = read_status_kib(pid, "VmHWM")
            with RssSampler(pid) as sampler:
                seconds = upload_seconds(daemon.url, image)
            hwm_after = read_status_kib(pid, "VmHWM")
    # Sampled peak catches growth over the starting level; VmHWM catches a peak between samples.
    growth_kib = max(sampler.peak_kib - rss_before, hwm_after - max(hwm_before, rss_before), 0)
    growth_mib = growth_kib / 1024
    print(f"  RSS before {rss_before / 1024:.1f} MiB, sampled peak {sampler.peak_kib / 1024:.1f} MiB "
          f"({sampler.samples} samples), VmHWM {hwm_before / 1024:.1f} -> {hwm_after / 1024:.1f} MiB; "
          f"growth {growth_mib:.1f} MiB over {seconds:.1f} s (goal < {GOAL_MIB} MiB)")
    return BenchResult(
        name=NAME, figure=f"+{growth_mib:.1f} MiB",
        baseline=f"RSS {rss_before / 1024:.0f} MiB before (ratio: peak/before)",
        ratio=max(sampler.peak_kib, hwm_after) / rss_before, goal=goal, verdict=verdict(growth_mib < GOAL_MIB),
        details={"rss_before_kib": rss_before, "peak_rss_kib": sampler.peak_kib, "hwm_before_kib": hwm_before,
                 "hwm_after_kib": hwm_after, "samples": sampler.samples, "upload_s": seconds, "bytes": SIZE},
    )

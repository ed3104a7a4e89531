"""Benchmark 5 (issue 4): does a single JSON create get slower as instances accumulate?

Creates instances one by one on the 1,024-CPU tree machine and compares the median latency of a
small window around the 10th create with the same window around the 1,000th. Validation is
meant to be O(1) per create (the ledger), so anything that grows with the instance count
(rewriting whole state, scanning records) shows up as a ratio above 1.
"""

from __future__ import annotations

import time

import httpx

from tests.bench.daemons import BIG_MACHINE, BIG_POOL_STEPS, check, create_json, fresh_connection_client, running_daemon
from tests.bench.measure import BenchResult, median, ms, scratch_dir, verdict

NAME = "1,000th JSON create vs 10th"
GOAL_RATIO = 2.0
EARLY = 10
LATE = 1000
WINDOW = 5  # creates on each side of EARLY and LATE


def create_seconds(client: httpx.Client, index: int) -> float:
    started = time.perf_counter()
    check(create_json(client, f"seq{index}"), 201)
    return time.perf_counter() - started


def window(samples: list[float], centre: int) -> list[float]:
    """Samples of creates centre-WINDOW .. centre+WINDOW (1-based create numbers)."""
    return samples[centre - 1 - WINDOW: centre + WINDOW]


def run() -> BenchResult:
    goal = f"< {GOAL_RATIO}x"
    with scratch_dir("create-scaling") as workdir:
        with running_daemon(workdir, simulator=BIG_MACHINE, pool_steps=BIG_POOL_STEPS) as daemon, \
                fresh_connection_client(daemon.url) as client:
            started = time.perf_counter()
            samples = [create_seconds(client, index) for index in range(1, LATE + WINDOW + 1)]
            total = time.perf_counter() - started
    early, late = median(window(samples, EARLY)), median(window(samples, LATE))
    ratio = late / early
    deciles = {f"{n}": median(window(samples, n)) for n in (10, 100, 250, 500, 750, 1000)}
    print(f"  create #{EARLY} median {ms(early)}, #{LATE} median {ms(late)}: {ratio:.2f}x (goal < {GOAL_RATIO}x); "
          f"{len(samples)} creates in {total:.1f} s")
    print("  median around create #: " + ", ".join(f"{n}: {ms(value)}" for n, value in deciles.items()))
    return BenchResult(
        name=NAME, figure=f"#{LATE} {ms(late)}", baseline=f"#{EARLY} {ms(early)}", ratio=ratio, goal=goal,
        verdict=verdict(ratio < GOAL_RATIO),
        details={"window": WINDOW, "median_around_s": deciles, "total_s": total, "creates": len(samples)},
    )

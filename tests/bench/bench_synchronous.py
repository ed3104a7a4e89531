"""What DESIGN "Durability" costs: create and load latency with SQLite `synchronous=FULL` (the
daemon's setting) as a ratio to `NORMAL` (the old one), both daemons run in this same run.

FULL syncs the WAL at every commit; the cost is one fsync per write transaction, so the ratio
depends on the disk (tmpfs: none; a spinning disk: large).
"""

from __future__ import annotations

import time

import httpx

from mkd.testing.daemon_process import DaemonProcess
from mkd.testing.imagegen import vmlinux
from tests.bench.daemons import SMALL_POOL, check, create_json, write_config
from tests.bench.measure import BenchResult, MiB, median, ms, scratch_dir

NAME = "synchronous=FULL vs NORMAL (create, load)"
REPEAT = 30


def _timings(client: httpx.Client) -> tuple[list[float], list[float]]:
    """(create seconds, load seconds) of REPEAT create → load → unload → delete rounds."""
    kernel = check(client.post("/v1/images", content=vmlinux()), 200, 201).json()["sha256"]
    creates: list[float] = []
    loads: list[float] = []
    for round_ in range(REPEAT):
        name = f"sync-{round_}"
        started = time.perf_counter()
        check(create_json(client, name, cpu_count=2, memory_bytes=256 * MiB), 201)
        created = time.perf_counter()
        check(client.post(f"/v1/instances/{name}/load", json={"kernel": kernel}), 200)
        loaded = time.perf_counter()
        creates.append(created - started)
        loads.append(loaded - created)
        check(client.post(f"/v1/instances/{name}/unload", json={}), 200)
        check(client.delete(f"/v1/instances/{name}"), 204)
    return creates, loads


def run() -> BenchResult:
    figures: dict[str, tuple[float, float]] = {}
    with scratch_dir("synchronous") as workdir:
        for mode in ("normal", "full"):
            config = write_config(workdir / f"{mode}.toml", {"kernel_profile": "rfc-v2"})
            daemon = DaemonProcess(workdir / f"state-{mode}", config=config,
                                   env={"MKD_DAEMON__SQLITE_SYNCHRONOUS": mode}).start()
            try:
                with daemon.client() as client:
                    check(client.put("/v1/pool", json=SMALL_POOL), 200, 201)
                    creates, loads = _timings(client)
            finally:
                daemon.stop()
            figures[mode] = (median(creates), median(loads))
    create_ratio = figures["full"][0] / figures["normal"][0]
    load_ratio = figures["full"][1] / figures["normal"][1]
    return BenchResult(
        name=NAME,
        figure=f"create {ms(figures['full'][0])}, load {ms(figures['full'][1])}",
        baseline=f"create {ms(figures['normal'][0])}, load {ms(figures['normal'][1])}",
        ratio=create_ratio, goal="report", verdict="INFO",
        details={"create_ratio": create_ratio, "load_ratio": load_ratio, "repeat": REPEAT,
                 "median_s": {mode: {"create": c, "load": lo} for mode, (c, lo) in figures.items()}},
    )

"""Benchmark (issue 14 item 5, issue 10 item 3): the instance console.

1. Throughput: a simulated spawn prints as fast as the simulator lets it (what the device's 16 KiB
   buffer does not take it prints again, so nothing is lost) while the daemon's console reader
   (one epoll thread) stores it; against writing the same bytes in the same pieces to a file,
   in the same run. Reported (the console path goes through the kernel model, a device buffer
   and a second file write; the file is the floor).
2. 50 console followers (SSE) on one instance of a real daemon: the median latency of other
   clients' API reads with the followers connected, against the same reads without them, same
   daemon. Goal: at most 10 % slower.
3. The console's idle cost: N running spawns, each printing a line a second, with the daemon's
   readers attached (the simulator's ticker, the reader thread, the appends) against the same
   spawns with no reader (nothing is printed then), CPU of the process over a window; scaled to
   2,047 instances, a share of one core (issue 13's idle goal is the whole daemon under 2 %).
   The reader thread's own CPU (mkd's part; on a host the kernel makes the output) and the
   simulator's ticker thread's (the simulated spawns printing) are reported apart.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from httpx_sse import connect_sse

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import simulated_client
from mkd.config import load_settings
from mkd.kernel_types import InstanceSpec, LoadRequest, PoolSpec
from mkd.kexec.flags import load_flags
from mkd.services.console_history import ConsoleHistory
from mkd.services.console_pace import MAX_PACE_S
from mkd.services.console_reader import start_console_reader
from mkd.testing import imagegen
from tests.bench.daemons import SMALL_POOL, check, running_daemon
from tests.bench.measure import BenchResult, MiB, scratch_dir, verdict

THROUGHPUT_BYTES = 32 * MiB
PIECE_BYTES = 4096
FOLLOWERS = 50
READS = 400
IDLE_INSTANCES = int(os.environ.get("MKD_BENCH_CONSOLE_INSTANCES", "256"))
FLEET = 2047
CPU_WINDOW_S = 10.0
# A console printing a line a second is read every MAX_PACE_S: a window of whole paces.
PACED_WINDOW_S = 2 * MAX_PACE_S
SMALL_KERNEL = {"pt_loads": ((0x1000000, 0x200000, 0x1000),)}  # a 2 MiB kernel: many fit the pool


@contextmanager
def _kernel(work: Path, instances: int) -> Iterator[HostBackend]:
    """The simulated tree kernel in process, with `instances` spawns running (no reader yet)."""
    cpus = instances + 1 + (instances + 1) % 2
    settings = load_settings(None, overrides={
        "daemon.state_dir": work / "state", "simulator.kernel_profile": "tree", "simulator.cpus": cpus,
        "simulator.numa_nodes": 1, "simulator.memory_bytes": (instances * 16 + 8192) * MiB})
    settings.daemon.state_dir.mkdir(parents=True, exist_ok=True)
    backend = simulated_client(settings)
    try:
        backend.apply_pool(PoolSpec(cpus=tuple(range(1, instances + 1)), memory_base=4 << 30,
                                    memory_bytes=instances * 16 * MiB))
        backend.create_instances([InstanceSpec(id=i, name=f"s{i}", cpus=(i,), memory_bytes=16 * MiB)
                                  for i in range(1, instances + 1)])
        kernel = work / "vmlinux"
        kernel.write_bytes(imagegen.vmlinux(**SMALL_KERNEL))  # type: ignore[arg-type]
        for i in range(1, instances + 1):
            backend.kexec_file_load(LoadRequest(kernel=kernel, initrd=None, cmdline=b"console=mktty0\0",
                                                flags=load_flags(i, has_initrd=False)))
            backend.start(i)
        yield backend
    finally:
        backend.close()


def _uid(instance_id: int) -> str:
    return f"00000000-0000-4000-8000-{instance_id:012d}"


def throughput(work: Path) -> BenchResult:
    piece = b"".join(f"{n:06d} the quick brown fox jumps over the lazy dog\n".encode()
                     for n in range(PIECE_BYTES // 54))[:PIECE_BYTES]
    pieces = THROUGHPUT_BYTES // len(piece)
    # The floor: the same pieces appended to a file.
    floor_path = work / "floor.log"
    started = time.perf_counter()
    with open(floor_path, "ab", buffering=0) as floor:
        for _ in range(pieces):
            floor.write(piece)
    file_s = time.perf_counter() - started
    with _kernel(work, 1) as backend:
        history = ConsoleHistory(work / "console", cap_bytes=THROUGHPUT_BYTES * 2,
                                 open_console=backend.open_console)
        history.attach(1, _uid(1), new_boot=False)
        start_console_reader(history)
        kernel = backend.io.kernel  # type: ignore[attr-defined]
        base = history.stored_end(1) or 0
        started = time.perf_counter()
        retries = 0
        for _ in range(pieces):
            rest = piece
            while rest:
                taken = kernel.spawn_print(1, rest)
                rest = rest[taken:]
                if rest:
                    retries += 1
                    time.sleep(0)  # the buffer is full: let the reader run
        while (history.stored_end(1) or 0) < base + pieces * len(piece):
            time.sleep(0.001)
        console_s = time.perf_counter() - started
        history.close()
    mib = pieces * len(piece) / MiB
    ratio = console_s / file_s
    print(f"  console throughput: {mib / console_s:.1f} MiB/s ({mib:.0f} MiB in {console_s:.2f} s, "
          f"{retries} full-buffer retries); file: {mib / file_s:.1f} MiB/s -> {ratio:.1f}x the file's time")
    return BenchResult(name="console throughput", figure=f"{mib / console_s:.1f} MiB/s",
                       baseline=f"file {mib / file_s:.1f} MiB/s", ratio=ratio, goal="report", verdict="INFO",
                       details={"bytes": pieces * len(piece), "console_s": console_s, "file_s": file_s,
                                "full_buffer_retries": retries})


def _read_latencies(url: str) -> list[float]:
    samples = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(READS):
            started = time.perf_counter()
            check(client.get(f"/v1/instances/other{index % 4}"), 200)
            samples.append(time.perf_counter() - started)
    return samples


def followers(work: Path) -> BenchResult:
    with running_daemon(work, simulator={"kernel_profile": "tree"}) as daemon, daemon.client() as client:
        check(client.put("/v1/pool", json=SMALL_POOL), 200, 201)
        kernel = check(client.post("/v1/images", content=imagegen.vmlinux()), 201).json()["sha256"]
        for index, name in enumerate(["web", "other0", "other1", "other2", "other3"]):
            check(client.post("/v1/instances", json={"name": name, "resources": {
                "cpus": [2 + index], "memory_bytes": 128 * MiB}}), 201)
            check(client.post(f"/v1/instances/{name}/load", json={"kernel": kernel, "cmdline": "console=mktty0"}),
                  200)
            check(client.post(f"/v1/instances/{name}/start"), 200)
        _read_latencies(daemon.url)  # warm up
        without = statistics.median(_read_latencies(daemon.url))
        stop = threading.Event()
        connected = threading.Semaphore(0)
        lines = [0] * FOLLOWERS

        def follow(slot: int) -> None:
            try:
                with httpx.Client(base_url=daemon.url, timeout=httpx.Timeout(30, read=None)) as http, \
                        connect_sse(http, "GET", "/v1/instances/web/console",
                                    headers={"Last-Event-ID": "0"}) as source:
                    connected.release()
                    for event in source.iter_sse():
                        lines[slot] += event.event == "line"
                        if stop.is_set():
                            return
            except httpx.HTTPError:
                pass  # the daemon stops at the end of the benchmark while the followers still read

        threads = [threading.Thread(target=follow, args=(slot,), daemon=True) for slot in range(FOLLOWERS)]
        for thread in threads:
            thread.start()
        for _ in threads:
            if not connected.acquire(timeout=60):
                raise RuntimeError("a follower did not connect")
        with_followers = statistics.median(_read_latencies(daemon.url))
        stop.set()
        seen = min(lines)
    ratio = with_followers / without
    print(f"  API reads with {FOLLOWERS} console followers: median {with_followers * 1000:.2f} ms, "
          f"without {without * 1000:.2f} ms -> {ratio:.2f}x (each follower got >= {seen} lines)")
    return BenchResult(name=f"API reads, {FOLLOWERS} console followers", figure=f"{with_followers * 1000:.2f} ms",
                       baseline=f"none {without * 1000:.2f} ms", ratio=ratio, goal="<= 1.10x",
                       verdict=verdict(ratio <= 1.10),
                       details={"median_with_s": with_followers, "median_without_s": without,
                                "min_lines_per_follower": seen})


def thread_cpu_s(thread: threading.Thread | None) -> float:
    """The time one thread of this process ran, in ns resolution (/proc/self/task/<tid>/schedstat;
    utime and stime count 10 ms ticks, too coarse for a thread that runs 1 ms a second)."""
    if thread is None or thread.native_id is None:
        return 0.0
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[0]) / 1e9


def idle_cost(work: Path) -> BenchResult:
    with _kernel(work, IDLE_INSTANCES) as backend:
        time.sleep(1.0)
        started_cpu, started = time.process_time(), time.monotonic()
        time.sleep(CPU_WINDOW_S)
        silent = (time.process_time() - started_cpu) / (time.monotonic() - started)
        history = ConsoleHistory(work / "console", cap_bytes=1 << 20, open_console=backend.open_console)
        for i in range(1, IDLE_INSTANCES + 1):
            history.attach(i, _uid(i), new_boot=False)
        reader = start_console_reader(history)
        ticker = backend.io.kernel.console._ticker  # type: ignore[attr-defined]
        time.sleep(2.0)
        started_cpu, started = time.process_time(), time.monotonic()
        reader_cpu, ticker_cpu = thread_cpu_s(reader), thread_cpu_s(ticker)
        time.sleep(PACED_WINDOW_S)
        window = time.monotonic() - started
        reading = (time.process_time() - started_cpu) / window
        reader_share = (thread_cpu_s(reader) - reader_cpu) / window
        ticker_share = (thread_cpu_s(ticker) - ticker_cpu) / window
        stored = sum(history.stored_end(i) or 0 for i in range(1, IDLE_INSTANCES + 1))
        history.close()
    extra = max(reading - silent, 0.0)
    scale = FLEET / IDLE_INSTANCES
    fleet = extra * scale
    print(f"  console idle cost: {IDLE_INSTANCES} spawns printing a line a second: {reading * 100:.2f} % of a core "
          f"with readers, {silent * 100:.2f} % without -> +{extra * 100:.2f} points; scaled to {FLEET}: "
          f"+{fleet * 100:.2f} % of a core, of which mkd's reader thread {reader_share * scale * 100:.2f} % and "
          f"the simulator's ticker {ticker_share * scale * 100:.2f} % ({stored} bytes stored)")
    return BenchResult(name=f"console idle CPU ({FLEET}, scaled from {IDLE_INSTANCES})",
                       figure=f"+{fleet * 100:.2f} % of a core", baseline=f"no readers {silent * 100:.2f} %",
                       ratio=(reading / silent) if silent else None, goal="report (issue 13: daemon < +2 %)",
                       verdict="INFO", details={"instances": IDLE_INSTANCES, "with_readers_share": reading,
                                                "without_readers_share": silent, "scaled_share": fleet,
                                                "reader_thread_share": reader_share,
                                                "simulator_ticker_share": ticker_share})


def run() -> list[BenchResult]:
    results = []
    with scratch_dir("console") as work:
        for name, part in (("throughput", throughput), ("followers", followers), ("idle", idle_cost)):
            folder = work / name
            folder.mkdir(parents=True, exist_ok=True)
            results.append(part(folder))
            shutil.rmtree(folder, ignore_errors=True)
    return results

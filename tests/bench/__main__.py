"""`make bench`: run every benchmark, print a summary table and write var/bench/results.json.

`python -m tests.bench upload load` runs only the benchmarks whose key is given.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from collections.abc import Callable

from tests.bench import (
    bench_console,
    bench_create_scaling,
    bench_dashboard,
    bench_desired,
    bench_dry_run_latency,
    bench_fleet,
    bench_fleet_failover,
    bench_instance_rss,
    bench_keepalive,
    bench_limits,
    bench_load,
    bench_plan,
    bench_reads,
    bench_status_poll,
    bench_synchronous,
    bench_upload,
    bench_upload_rss,
)
from tests.bench.measure import BENCH_DIR, WORK_DIR, BenchResult

BENCHMARKS: dict[str, Callable[[], list[BenchResult]]] = {
    "keepalive": lambda: [bench_keepalive.run()],
    "upload": lambda: [bench_upload.run()],
    "upload-rss": lambda: [bench_upload_rss.run()],
    "load": lambda: [bench_load.run()],
    "plan": bench_plan.run,
    "create-scaling": lambda: [bench_create_scaling.run()],
    "dry-run": lambda: [bench_dry_run_latency.run()],
    "instance-rss": bench_instance_rss.run,
    "limits": bench_limits.run,
    "dashboard": bench_dashboard.run,
    "synchronous": lambda: [bench_synchronous.run()],
    "desired": bench_desired.run,
    "status-poll": bench_status_poll.run,
    "console": bench_console.run,
    "fleet": bench_fleet.run,
    "reads": bench_reads.run,
    "fleet-failover": bench_fleet_failover.run,
}


def failed(key: str, error: BaseException) -> BenchResult:
    # A broken benchmark is reported in the table rather than hiding the others' figures.
    traceback.print_exception(error)
    return BenchResult(name=key, figure="-", baseline="-", ratio=None, goal="-", verdict="MISS",
                       details={"error": f"{type(error).__name__}: {error}"})


def print_table(results: list[BenchResult]) -> None:
    headers = ("benchmark", "figure", "baseline", "ratio", "goal", "verdict")
    rows = [(r.name, r.figure, r.baseline, "-" if r.ratio is None else f"{r.ratio:.2f}x", r.goal, r.verdict)
            for r in results]
    widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print()
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def main(argv: list[str]) -> int:
    unknown = [key for key in argv if key not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
        return 2
    selected = argv or list(BENCHMARKS)
    results: list[BenchResult] = []
    started = time.monotonic()
    for key in selected:
        print(f"== {key}", flush=True)
        bench_started = time.monotonic()
        try:
            results.extend(BENCHMARKS[key]())
        except Exception as error:  # noqa: BLE001 - one failure must not lose the other figures
            results.append(failed(key, error))
        print(f"   ({time.monotonic() - bench_started:.1f} s)", flush=True)
    print_table(results)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    out = BENCH_DIR / "results.json"
    out.write_text(json.dumps({
        "python": platform.python_version(), "machine": platform.machine(), "finished_unix": time.time(),
        "elapsed_s": time.monotonic() - started, "results": [r.as_json() for r in results],
    }, indent=2) + "\n")
    try:
        WORK_DIR.rmdir()  # each benchmark removes its own scratch directory
    except OSError:
        pass
    print(f"\nwrote {out.relative_to(BENCH_DIR.parents[1])} ({time.monotonic() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

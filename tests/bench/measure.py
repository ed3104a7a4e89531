"""What every benchmark shares: the result record, statistics, timing, disk checks, RSS sampling."""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

MiB = 1 << 20
GiB = 1 << 30

REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO_ROOT / "var" / "bench"
# Scratch space for big files and daemon state dirs; removed after each benchmark.
WORK_DIR = BENCH_DIR / "work"

Verdict = Literal["PASS", "MISS", "INFO", "SKIP"]


@dataclass
class BenchResult:
    """One line of the summary table (and of results.json)."""

    name: str
    figure: str
    baseline: str
    ratio: float | None
    goal: str
    verdict: Verdict
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def skipped(name: str, goal: str, reason: str) -> BenchResult:
    print(f"  SKIP {name}: {reason}")
    return BenchResult(name=name, figure="-", baseline="-", ratio=None, goal=goal, verdict="SKIP",
                       details={"skipped": reason})


def verdict(ok: bool) -> Verdict:
    return "PASS" if ok else "MISS"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): with 30 samples p99 is the slowest, no interpolation."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def time_each(action: Callable[[], object], repeat: int) -> list[float]:
    """Wall time of `repeat` calls of `action`, in seconds."""
    samples: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(path).free


def space_problem(path: Path, needed: int) -> str | None:
    """Why a benchmark needing `needed` bytes under `path` cannot run, or None when it can."""
    free = free_bytes(path)
    # Keep a margin so a benchmark never fills the disk for everything else on the machine.
    margin = 1 * GiB
    if free < needed + margin:
        return (f"needs {needed / GiB:.1f} GiB plus a {margin / GiB:.0f} GiB margin under {path}, "
                f"only {free / GiB:.1f} GiB free")
    print(f"  disk: {free / GiB:.1f} GiB free under {path}, this benchmark needs {needed / GiB:.1f} GiB")
    return None


@contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """A fresh directory under var/bench/work, deleted afterwards (big files never outlive a bench)."""
    path = WORK_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_status_kib(pid: int, key: str) -> int:
    """One `kB` field of /proc/<pid>/status (VmRSS, VmHWM), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(f"{key} not in /proc/{pid}/status")


class RssSampler:
    """Polls a process's VmRSS on a thread, so a short peak between two reads is rarely missed."""

    def __init__(self, pid: int, interval_s: float = 0.01) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_kib = max(self.peak_kib, read_status_kib(self.pid, "VmRSS"))
                self.samples += 1
            except (OSError, KeyError):
                return  # the process is gone
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

"""A process's CPU by thread: /proc/<pid>/task/<tid>/stat for the time, `py-spy dump` for the
Python thread names (CPython 3.11 does not give its threads' names to the kernel)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# `Thread 1417 (idle): "MainThread"`: the native id in decimal (a pthread id would be 0x...)
_THREAD_LINE = re.compile(r'^Thread ([0-9]+) \([^)]*\): "(.*)"', re.MULTILINE)


def _cpu_seconds(stat_path: Path) -> float:
    fields = stat_path.read_text().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime + stime


def process_cpu_seconds(pid: int) -> float:
    return _cpu_seconds(Path(f"/proc/{pid}/stat"))


def threads_cpu_seconds(pid: int) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds[int(task.name)] = _cpu_seconds(task / "stat")
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return seconds


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, as py-spy sees them (empty without py-spy)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names: dict[int, str] = {}
    for tid, name in _THREAD_LINE.findall(out):
        names[int(tid)] = name
    return names


def cpu_by_thread(pid: int, window_s: float) -> tuple[float, dict[str, float]]:
    """The process's CPU over `window_s` as a share of one core, and the same per thread name
    (threads of one name summed; native threads py-spy does not name by their kernel name)."""
    names = thread_names(pid)
    before_total, before = process_cpu_seconds(pid), threads_cpu_seconds(pid)
    started = time.monotonic()
    time.sleep(window_s)
    total, after = process_cpu_seconds(pid), threads_cpu_seconds(pid)
    elapsed = time.monotonic() - started
    shares: dict[str, float] = defaultdict(float)
    for tid, seconds in after.items():
        name = names.get(tid)
        if name is None:
            try:
                name = "native " + Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            except FileNotFoundError:
                name = "ended"
        shares[name] += (seconds - before.get(tid, 0.0)) / elapsed
    return (total - before_total) / elapsed, dict(shares)


def breakdown(shares: dict[str, float]) -> str:
    """`name 1.23 %` items, biggest first, those under 0.05 % left out."""
    items = sorted(shares.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {share * 100:.2f} %" for name, share in items if share >= 0.0005)

"""`wrk` (Debian's HTTP load generator, C, not the Python client) run and parsed for the benches."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from tests.bench.measure import REPO_ROOT

THREADS = 2
CONNECTIONS = 16
# `MKD_BENCH_QUICK=1`: a short run per URL (a smoke test of the bench, not figures to quote).
DURATION = "2s" if os.environ.get("MKD_BENCH_QUICK") == "1" else "8s"

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_s: float
    p99_s: float
    requests: int
    bad_responses: int  # non-2xx/3xx plus socket errors: a figure with any is not quoted


def ensure_wrk() -> str:
    """wrk's path, installed through the Makefile's system-deps (as `make bench` does) when missing."""
    found = shutil.which("wrk")
    if found is None:
        subprocess.run(["make", "-C", str(REPO_ROOT), "system-deps"], check=True)
        found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed and `make system-deps` did not install it")
    return found


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse(output: str) -> WrkResult:
    rps = re.search(r"Requests/sec:\s+([0-9.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    total = re.search(r"([0-9]+) requests in", output)
    if not (rps and p50 and p99 and total):
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+([0-9]+)", output)
    errors = re.search(r"Socket errors: connect ([0-9]+), read ([0-9]+), write ([0-9]+), timeout ([0-9]+)", output)
    bad_count = int(bad.group(1)) if bad else 0
    if errors:
        bad_count += sum(int(errors.group(i)) for i in range(1, 5))
    return WrkResult(requests_per_s=float(rps.group(1)), p50_s=_seconds(p50.group(1)), p99_s=_seconds(p99.group(1)),
                     requests=int(total.group(1)), bad_responses=bad_count)


def run_wrk(url: str, *, headers: Sequence[str] = (), prefix: Sequence[str] = (),
            duration: str = DURATION) -> WrkResult:
    """`wrk -t2 -c16 -dN --latency`; `prefix` runs it inside a namespace (`ip netns exec NS`)."""
    cmd = [*prefix, ensure_wrk(), f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{duration}", "--latency"]
    for header in headers:
        cmd += ["-H", header]
    done = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr}")
    return parse(done.stdout)

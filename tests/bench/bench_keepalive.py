"""Benchmark 0: GET /healthz on one kept-alive connection vs a new connection per request.

A keep-alive request should cost no more than a fresh one (it saves the TCP handshake). If it
costs ~40 ms more, responses wait for the client's delayed ACK: TCP_NODELAY is not set on the
daemon's connections (Nagle holds the body segment back behind the unacknowledged headers).
"""

from __future__ import annotations

from pathlib import Path

from mkd.testing.daemon_process import DaemonProcess
from tests.bench.daemons import check, fresh_connection_client, running_daemon
from tests.bench.measure import BenchResult, median, ms, percentile, scratch_dir, time_each, verdict

NAME = "GET /healthz keep-alive vs new connection"
REPEAT = 50
GOAL_RATIO = 2.0


def healthz_seconds(daemon: DaemonProcess, *, keep_alive: bool) -> list[float]:
    with (daemon.client() if keep_alive else fresh_connection_client(daemon.url)) as client:
        check(client.get("/healthz"), 200)  # warm-up; also opens the kept-alive connection
        return time_each(lambda: check(client.get("/healthz"), 200), REPEAT)


def measure(workdir: Path) -> tuple[list[float], list[float]]:
    with running_daemon(workdir) as daemon:
        return healthz_seconds(daemon, keep_alive=True), healthz_seconds(daemon, keep_alive=False)


def run() -> BenchResult:
    with scratch_dir("keepalive") as workdir:
        kept, fresh = measure(workdir)
    ratio = median(kept) / median(fresh)
    print(f"  keep-alive p50 {ms(median(kept))} p99 {ms(percentile(kept, 99))}; new connection p50 "
          f"{ms(median(fresh))} p99 {ms(percentile(fresh, 99))}; ratio {ratio:.1f}x (goal <= {GOAL_RATIO}x)")
    if ratio > GOAL_RATIO:
        print("  keep-alive responses stall: TCP_NODELAY is off on the daemon's connections "
              "(mkd/cli/serve.py bind_sockets creates the socket with proto 0)")
    return BenchResult(
        name=NAME, figure=f"p50 {ms(median(kept))}", baseline=f"new connection p50 {ms(median(fresh))}",
        ratio=ratio, goal=f"<= {GOAL_RATIO}x", verdict=verdict(ratio <= GOAL_RATIO),
        details={"keep_alive_s": kept, "new_connection_s": fresh},
    )

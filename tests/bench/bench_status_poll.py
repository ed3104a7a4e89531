"""Issue 10 item 6: what the status poller costs with 2,047 instances at the default interval.

The tree kernel raises no notification (spec 8.4), so each `[daemon] status_poll_interval_s` (1 s
by default) the daemon reads the status file of every instance it records ACTIVE and lists the
instances directory. The figure is the CPU of the whole daemon process (utime + stime from
/proc/<pid>/stat over a window) with 2,047 instances, against the same daemon build idle with no
instances, in the same run. The instances come from one device-tree plan per half
(bench_instance_rss.plan_dts) and are not started: this is the cost of instances that cannot
change on their own (no status read each, no console reader). 2,047 running instances are
bench_desired's idle figure (MKD_BENCH_DESIRED_COUNT=2047).
"""

from __future__ import annotations

import os
import time

from tests.bench.bench_instance_rss import MAX_INSTANCES, plan_dts
from tests.bench.bench_plan import DTS_HEADERS
from tests.bench.daemons import BIG_MACHINE, BIG_POOL_STEPS, check, fresh_connection_client, running_daemon
from tests.bench.measure import BenchResult, scratch_dir

WINDOW_S = 15.0  # fifteen polls at the default interval
SETTLE_S = 3.0  # after the creates: the requests' own work is done before the window opens
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), /proc/<pid>/stat fields 14 and 15."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def cpu_percent(pid: int, window_s: float) -> float:
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(window_s)
    return 100.0 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start)


def measure(instances: int) -> float:
    with scratch_dir(f"status-poll-{instances}") as workdir:
        with running_daemon(workdir, simulator=BIG_MACHINE, pool_steps=BIG_POOL_STEPS) as daemon, \
                fresh_connection_client(daemon.url, timeout=600) as client:
            assert daemon.proc is not None
            if instances:
                half = instances // 2
                for first, last in ((1, half), (half + 1, instances)):
                    check(client.post("/v1/instances", content=plan_dts(first, last), headers=DTS_HEADERS), 201)
                listed = check(client.get("/v1/instances", params={"limit": 1}), 200).json()
                assert listed["items"], "the plan created nothing"
            time.sleep(SETTLE_S)
            return cpu_percent(daemon.proc.pid, WINDOW_S)


def run() -> list[BenchResult]:
    idle = measure(0)
    busy = measure(MAX_INSTANCES)
    ratio = busy / idle if idle > 0 else None
    print(f"  status poll every 1 s: {busy:.2f} %CPU with {MAX_INSTANCES} instances, "
          f"{idle:.2f} %CPU idle with none ({WINDOW_S:g} s windows)")
    return [BenchResult(
        name=f"status poll, {MAX_INSTANCES} instances", figure=f"{busy:.2f} %CPU",
        baseline=f"idle {idle:.2f} %CPU", ratio=ratio, goal="report", verdict="INFO",
        details={"busy_cpu_percent": busy, "idle_cpu_percent": idle, "window_s": WINDOW_S,
                 "interval_s": 1.0, "instances": MAX_INSTANCES},
    )]

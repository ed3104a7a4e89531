"""Named points where a test can make the daemon die as if SIGKILLed ([daemon] crash_at).

Crash tests start a real daemon with MKD_DAEMON__CRASH_AT=<point>, drive it to that point, and
check that the restarted daemon reconciles. Unset (the default), every point is a no-op.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "create.after_kernel",  # the kernel created the instances; no record yet
    "delete.after_kernel",  # the kernel destroyed the instance; the record is still there
    "load.after_intent",  # LOADING persisted; kexec_file_load not called yet
    "load.after_kernel",  # the kernel holds the kimage; the record still says LOADING
    "unload.after_kernel",
    "start.after_intent",  # the start intent persisted; the reboot syscall not made yet
    "start.after_kernel",  # the reboot syscall returned 0; the record still says LOADED
    "stop.after_kernel",
    "pool.after_kernel",
)

_armed: str | None = None


def arm(point: str | None) -> None:
    if point is not None and point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    global _armed
    _armed = point


def crash_point(point: str) -> None:
    if _armed == point:
        os.kill(os.getpid(), signal.SIGKILL)

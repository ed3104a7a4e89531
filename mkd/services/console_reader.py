"""The one thread that reads the consoles when they are readable (issue 10: nothing is dropped
while mkd runs), so the event loop never waits on a device.

The device keeps 16 KiB per reader and drops the rest (spec 8.8.4), so a reader must not wait
for a timer while a spawn prints. Waking once per line costs too much with 2,047 spawns each
printing a line a second, so after each round the thread gathers for `GATHER_S` before it looks
again, unless a read came back close to full: then it reads again at once. A burst from idle
therefore has `GATHER_S` to fill the 16 KiB buffer (over 300 KiB/s) before anything drops.
"""

from __future__ import annotations

import logging
import threading
import time

from mkd.services.console_history import ConsoleHistory

log = logging.getLogger("mkd.console")

GATHER_S = 0.05
IDLE_WAIT_S = 5.0  # an upper bound on one wait; readiness wakes it, and close() does


def start_console_reader(history: ConsoleHistory) -> threading.Thread:
    thread = threading.Thread(target=_read_while_open, args=(history,), name="console-reader", daemon=True)
    thread.start()
    return thread


def _read_while_open(history: ConsoleHistory) -> None:
    while True:
        ready = history.wait_ready(IDLE_WAIT_S)
        if ready is None:
            return
        if not ready:
            continue
        try:
            pressed = history.drain_some(ready)
        except Exception:  # the thread must outlive one bad round
            log.exception("console read failed")
            pressed = False
        if not pressed:
            time.sleep(GATHER_S)

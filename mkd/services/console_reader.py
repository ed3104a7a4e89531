"""The one thread that reads the consoles when they are readable (issue 10: nothing is dropped
while mkd runs), so the event loop never waits on a device.

The device keeps 16 KiB per reader and drops the rest (spec 8.8.4), so a reader must not wait
for a timer while a spawn prints. Waking once per line costs too much with 2,047 spawns each
printing a line a second, so after each round the thread gathers for `GATHER_S` before it looks
again, unless a read came back close to full: then it reads again at once. A burst from idle
therefore has `GATHER_S` to fill the 16 KiB buffer (over 300 KiB/s) before anything drops, and
a console that printed since the last round at a rate that fills the buffer within four
gathering times is read again at once.
"""

from __future__ import annotations

import logging
import threading
import time

from mkd.services.console_history import READ_BYTES, ConsoleHistory

log = logging.getLogger("mkd.console")

GATHER_S = 0.05
IDLE_WAIT_S = 1.0  # an upper bound on one wait (readiness wakes it, and close() does): gathered writes go


def start_console_reader(history: ConsoleHistory) -> threading.Thread:
    thread = threading.Thread(target=_read_while_open, args=(history,), name="console-reader", daemon=True)
    thread.start()
    return thread


def _read_while_open(history: ConsoleHistory) -> None:
    last_round = time.monotonic()
    while True:
        ready = history.wait_ready(IDLE_WAIT_S)
        if ready is None:
            return
        try:
            most = history.drain_some(ready) if ready else 0
            history.flush_due()
        except Exception:  # the thread must outlive one bad round
            log.exception("console read failed")
            most = 0
        if not ready:
            continue
        now = time.monotonic()
        time.sleep(gather_s(most, now - last_round))
        last_round = now


def gather_s(most_bytes: int, since_s: float) -> float:
    """How long to gather before the next round, when one console gave `most_bytes` in `since_s`."""
    if most_bytes <= 0:
        return GATHER_S
    fill_s = READ_BYTES * max(since_s, 1e-6) / most_bytes  # at that rate the buffer fills in fill_s
    return GATHER_S if fill_s > 4 * GATHER_S else 0.0

"""The one thread that reads the consoles when they are readable (issue 10: nothing is dropped
while mkd runs), so the event loop never waits on a device.

Each console is read when it is readable and its pace has passed (`console_pace`: how soon its
buffer would fill at the rate it prints). Between rounds the thread gathers for `GATHER_S`, so
one wake-up serves every console that printed meanwhile, unless a read came back at a rate that
fills the 16 KiB buffer within four gathering times: then it looks again at once.
"""

from __future__ import annotations

import logging
import threading
import time

from mkd.services.console_history import ConsoleHistory
from mkd.services.console_pace import pace_s

log = logging.getLogger("mkd.console")

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
    """How long to gather before the next round, when one console gave `most_bytes` in `since_s`:
    the pace of a console read as soon as it prints."""
    return pace_s(most_bytes, since_s, eager=True)

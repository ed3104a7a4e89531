"""When the daemon reads a console again (issue 10: nothing dropped while mkd runs; issue 13:
2,047 spawns each printing a line a second must not cost a read each per second).

The device keeps 16 KiB per reader and drops what does not fit (spec 8.8.4), so how soon a
console must be read again depends on how fast it prints. After each read, a console waits until
a quarter of the buffer would have filled at the rate it printed since its previous read: at
least `GATHER_S` (so one wake-up serves many consoles), at most `MAX_PACE_S`; and none at all
when that rate fills the buffer within four gathering times. A console that gave more than
`BUSY_BYTES` in one read waits `GATHER_S` (its rate is then measured over a short time), and so
do one in its first `EAGER_S` after a boot began (a boot log comes fast) and one somebody follows.

So a line a second is read every 30 s, thirty lines at a time, and a console that starts printing
more is read as it prints once it gave a KiB. What a quiet console prints beyond 16 KiB
before that read is dropped by the device (a burst of more than about 550 bytes a second that
lasts a whole pace; a panic trace or a boot log fits): the price of not waking for every line of
every spawn. At 10 s a pace, 2,047 such consoles cost a read, an epoll_ctl and an append each
205 times a second, the most of a converged daemon's idle CPU (issue 13 item 7); at 30 s, 68.
A daemon killed outright loses what its readers held.
"""

from __future__ import annotations

import math

READ_BYTES = 16_384  # the device's buffer (spec 8.8.4): one read empties it
GATHER_S = 0.05
MAX_PACE_S = 30.0
EAGER_S = 10.0
BUSY_BYTES = 1024
FILL_SHARE = 0.25
ROUND_S = 1.0  # slow consoles are read together, on whole seconds


def pace_s(got_bytes: int, since_s: float, *, eager: bool) -> float:
    """How long a console that gave `got_bytes` in its last `since_s` waits before its next read."""
    if got_bytes <= 0:
        return GATHER_S if eager else MAX_PACE_S
    fill_s = READ_BYTES * max(since_s, 1e-6) / got_bytes  # at that rate the buffer fills in fill_s
    if fill_s <= 4 * GATHER_S:
        return 0.0
    if eager or got_bytes > BUSY_BYTES:
        return GATHER_S
    return min(MAX_PACE_S, max(GATHER_S, fill_s * FILL_SHARE))


def due_at(now: float, pace: float) -> float:
    """When a console read at `now` is read again: a pace of a second or more ends on a whole
    second (earlier, never later), so the consoles that print slowly are read in one round a
    second rather than each on its own (every round costs a wake-up of the reader thread)."""
    if pace < ROUND_S:
        return now + pace
    return max(math.floor((now + pace) / ROUND_S) * ROUND_S, now + ROUND_S / 2)

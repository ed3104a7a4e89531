"""What a running tree spawn does on its own, kept as times (spec 8.2.2, 8.4; issue 10 item 4).

A spawn that will panic, power off, reboot, halt or hang gets the time of that on its
SpawnRecord; the timeline holds those times in one heap so the kernel, whenever it is looked at,
applies exactly what is due (no thread or timer per instance). `print_up_to` produces the
console output such a spawn has printed by a given time: one uptime line per second until it
hangs or ends, then its panic trace or exit line.
"""

from __future__ import annotations

import heapq
import math

from mkd.backends.simulated import boot_log
from mkd.backends.simulated.faults import SpawnEnd
from mkd.backends.simulated.mktty import Mktty
from mkd.backends.simulated.model import InstanceRecord, SpawnRecord


class SpawnTimeline:
    def __init__(self) -> None:
        self._due: list[tuple[float, int, float]] = []  # (when, instance id, spawn started_at)

    def schedule(self, instance_id: int, spawn: SpawnRecord) -> None:
        for when in (spawn.end_noticed_at, spawn.ends_at, spawn.hangs_at):
            if when is not None:
                heapq.heappush(self._due, (when, instance_id, spawn.started_at))

    def pop_due(self, now: float) -> list[tuple[int, float]]:
        """(instance id, spawn started_at) of every entry due by `now`, oldest first."""
        due: list[tuple[int, float]] = []
        while self._due and self._due[0][0] <= now:
            _, instance_id, started_at = heapq.heappop(self._due)
            due.append((instance_id, started_at))
        return due


def _panic_timeout(inst: InstanceRecord) -> int:
    return boot_log.panic_timeout(inst.kimage.cmdline if inst.kimage else b"")


def arm_end(inst: InstanceRecord, spawn: SpawnRecord, how: SpawnEnd, at: float) -> None:
    """The spawn hangs at `at`, or ends then: a panic settles `panic=N` seconds later (8.2.2)."""
    if how == "hang":
        spawn.hangs_at = at
        return
    spawn.end, spawn.end_noticed_at = how, at
    spawn.ends_at = at + (_panic_timeout(inst) if how == "panic" else 0)


def hung(spawn: SpawnRecord, now: float) -> bool:
    return spawn.hangs_at is not None and spawn.hangs_at <= now


def print_up_to(console: Mktty, inst: InstanceRecord, now: float) -> None:
    """Emit what the spawn has printed by `now` and is not out yet."""
    data = printed_by(inst, now, connected=console.has_reader(inst.id))
    if data:
        console.emit(inst.id, data)


def printed_by(inst: InstanceRecord, now: float, *, connected: bool) -> bytes:
    """What the spawn has printed by `now` and is not out yet (marked out). Without a connected
    reader the device drops it (8.8.4), so the uptime lines are not even built."""
    spawn = inst.spawn
    if spawn is None or not spawn.running:
        return b""
    out = b""
    hangs_at, noticed = spawn.hangs_at, spawn.end_noticed_at
    if hangs_at is None and noticed is None:  # the common case, once a second for every spawn
        upto = math.floor(now - spawn.started_at)
    else:
        upto = math.floor(min(now, *(at for at in (hangs_at, noticed) if at is not None)) - spawn.started_at)
    if upto > spawn.printed_s:
        if connected:
            out = boot_log.uptime_lines(inst.name, spawn.printed_s + 1, upto)
        spawn.printed_s = upto
    if noticed is not None and noticed <= now and not spawn.end_printed:
        uptime = noticed - spawn.started_at
        if spawn.end == "panic":
            out += boot_log.panic_trace(inst.id, uptime, _panic_timeout(inst))
        else:
            out += boot_log.exit_line(spawn.end or "halt", uptime)
        spawn.end_printed = True
    return out

"""Fault injection for the simulated kernel (tests and `[simulator] faults`); the host has none.

`[simulator] faults` is this dataclass as a table. Per-instance faults of a running spawn live
under `instances`, keyed by instance name (spec 8.2.2, 8.4):

    [simulator.faults.instances.web]
    after_start = "panic"   # or "poweroff", "reboot", "halt", "hang"
    delay_s = 2             # seconds after the start; a panic adds the spawn's `panic=N` (spec 8.2.2)
    ack = false             # the spawn never ACKs halts or hot-plug messages (spec 8.3)

A spawn that panics, powers off, reboots or halts ends `loaded` without any host call; one
that hangs stays `active` and never ACKs again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

SpawnEnd = Literal["panic", "poweroff", "reboot", "halt", "hang"]
SPAWN_ENDS: tuple[SpawnEnd, ...] = ("panic", "poweroff", "reboot", "halt", "hang")


@dataclass(frozen=True)
class SpawnFault:
    """What one instance's spawn does on its own after each start."""

    after_start: SpawnEnd | None = None
    delay_s: float = 0.0
    ack: bool = True  # False: MK_SYS_SHUTDOWN and MK_RES_* messages are never ACKed

    def __post_init__(self) -> None:
        if self.after_start is not None and self.after_start not in SPAWN_ENDS:
            raise ValueError(f"after_start must be one of {', '.join(SPAWN_ENDS)}, not {self.after_start!r}")
        if self.delay_s < 0:
            raise ValueError("delay_s must not be negative")


@dataclass
class Faults:
    """What the simulated kernel is told to get wrong, and where."""

    fail_load_step: str | None = None  # e.g. "copy" makes kimage_load_segment fail with EIO
    fail_start: str | None = None  # errno name returned by the spawn
    fail_after_start: bool = False  # instance goes `failed` right after it becomes active
    halt_ack: bool = True  # False: graceful halt times out (ETIMEDOUT)
    update_ack: bool = True  # False: a running spawn never ACKs a resource op (the op times out, M13)
    # Page allocations that return NULL (ENOMEM): "manifest", "ipi" (tree), "kho_fdt" (rfc-v2),
    # "control", "swap" (spec 2.3 step 6, 2.4 step 4, 2.7.1 step 11).
    fail_page_alloc: list[str] = field(default_factory=list)
    instances: dict[str, SpawnFault] = field(default_factory=dict)  # by instance name, see the module doc
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        raw: dict[str, Any] = dict(self.instances)
        self.instances = {
            name: value if isinstance(value, SpawnFault) else SpawnFault(**value) for name, value in raw.items()
        }

    def spawn(self, name: str) -> SpawnFault:
        return self.instances.get(name, SpawnFault())

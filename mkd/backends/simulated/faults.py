"""Fault injection for the simulated kernel (tests and `[simulator] faults`); the host has none."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Faults:
    """What the simulated kernel is told to get wrong, and where."""

    fail_load_step: str | None = None  # e.g. "copy" makes kimage_load_segment fail with EIO
    fail_start: str | None = None  # errno name returned by the spawn
    fail_after_start: bool = False  # instance goes `failed` right after it becomes active
    halt_ack: bool = True  # False: graceful halt times out (ETIMEDOUT)
    update_ack: bool = True  # False: hot update of an ACTIVE instance is NACKed
    # Page allocations that return NULL (ENOMEM): "manifest", "ipi" (tree), "kho_fdt" (rfc-v2),
    # "control", "swap" (spec 2.3 step 6, 2.4 step 4, 2.7.1 step 11).
    fail_page_alloc: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)

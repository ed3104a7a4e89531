"""The host's e820 table as the simulator knows it: its System RAM ranges (spec 2.7.2 boot params)."""

from __future__ import annotations

from mkd.kexec.env import KexecEnv
from mkd.kexec.x86_boot_params import E820_TYPE_RAM

_E820_MAX_ENTRIES = 128


def host_e820(env: KexecEnv) -> list[tuple[int, int, int]]:
    return [(base, size, E820_TYPE_RAM) for base, size in sorted(env.system_ram)][:_E820_MAX_ENTRIES]

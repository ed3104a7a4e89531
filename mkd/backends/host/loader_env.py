"""The loader environment of the running kernel, read through the kernel interface.

DESIGN "Two backends": each backend supplies the environment its loaders run under; strict
isolation plans placements with it. On a host it is read, not configured:
- memory map: the top-level "System RAM" ranges of /proc/iomem minus the multikernel pool
  (the v2 fallback's walk, spec 3.3); total RAM from /proc/meminfo;
- signature enforcement (spec 2.7.1 step 3): lockdown, `lockdown=` on the command line, or a
  kernel built with CONFIG_KEXEC_SIG_FORCE (/proc/config.gz);
- 5-level paging: the `la57` CPU flag in /proc/cpuinfo.
What the interface does not show (purgatory size, bzImage policy, IPI ABI) keeps KexecEnv's
defaults, which are the seed's.
"""

from __future__ import annotations

import gzip
import zlib

from mkd.backends.host.procfs import POOL_IOMEM_NAME, Procfs
from mkd.backends.kernel_io import KernelIO
from mkd.kernel_types import Arch, KernelProfile
from mkd.kexec.env import KexecEnv

LOCKDOWN_PATH = "/sys/kernel/security/lockdown"
SYSTEM_RAM = "System RAM"


def signature_enforcement(io: KernelIO) -> list[str]:
    """The reasons kexec_file_load will demand a valid signature; empty when it will not."""
    procfs = Procfs(io)
    reasons = []
    try:
        lockdown = io.read(LOCKDOWN_PATH).decode(errors="replace")
    except OSError:
        lockdown = ""
    for mode in ("integrity", "confidentiality"):
        if f"[{mode}]" in lockdown:
            reasons.append(f"kernel lockdown is {mode}")
    for word in (procfs.read_text("cmdline") or "").split():
        if word in ("lockdown=integrity", "lockdown=confidentiality") and not reasons:
            reasons.append(f"{word} on the kernel command line")
    if "CONFIG_KEXEC_SIG_FORCE=y" in _kernel_config(procfs):
        reasons.append("the kernel is built with CONFIG_KEXEC_SIG_FORCE=y")
    return reasons


def _kernel_config(procfs: Procfs) -> str:
    data = procfs.read_bytes("config.gz")
    if data is None:
        return ""
    try:
        return gzip.decompress(data).decode(errors="replace")
    except (OSError, EOFError, zlib.error):
        return ""


def five_level_paging(procfs: Procfs) -> bool:
    for line in (procfs.read_text("cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return "la57" in value.split()
    return False


def system_ram(procfs: Procfs) -> tuple[tuple[int, int], ...]:
    """(base, size) of System RAM outside every multikernel pool region, ascending."""
    regions = procfs.iomem()
    ram = [(region.start, region.end + 1) for region in regions if region.name == SYSTEM_RAM]
    holes = sorted((region.start, region.end + 1) for region in regions if region.name == POOL_IOMEM_NAME)
    pieces: list[tuple[int, int]] = []
    for start, end in sorted(ram):
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                pieces.append((cursor, hole_start - cursor))
            cursor = max(cursor, hole_end)
        if cursor < end:
            pieces.append((cursor, end - cursor))
    return tuple(pieces)


def read_loader_env(io: KernelIO, profile: KernelProfile, arch: Arch) -> KexecEnv:
    procfs = Procfs(io)
    total = procfs.memory_bytes()
    return KexecEnv(
        profile=profile,
        arch=arch,
        five_level_paging=five_level_paging(procfs),
        kexec_sig_enforced=bool(signature_enforcement(io)),
        system_ram=system_ram(procfs),
        total_ram_bytes=total if total else KexecEnv.total_ram_bytes,
    )

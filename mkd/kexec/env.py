"""The simulated kernel's build and machine facts that change kexec_file_load's outcome (spec 2.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mkd.kernel_types import Arch, KernelProfile

if TYPE_CHECKING:
    from mkd.config import SimulatorSettings



@dataclass(frozen=True)
class KexecEnv:
    profile: KernelProfile
    arch: Arch
    five_level_paging: bool = False
    kexec_sig_enforced: bool = False
    lockdown: Literal["none", "integrity", "confidentiality"] = "none"  # both levels lock kexec
    purgatory_bytes: int = 0x4000
    bzimage_policy: Literal["load-no-spawn", "reject"] = "load-no-spawn"
    mk_ipi_abi_version: int = 1
    efi_map_size: int = 0
    ima_kexec: bool = True  # CONFIG_IMA_KEXEC
    kho: bool = True  # CONFIG_KEXEC_HANDOVER
    multikernel: bool = True  # CONFIG_MULTIKERNEL
    # (base, size) RAM ranges outside the multikernel pool: the v2 fallback's System RAM walk.
    system_ram: tuple[tuple[int, int], ...] = ()
    total_ram_bytes: int = 32 << 30  # totalram_pages for the sanity check's "half of RAM" rule
    host_booted_with_dtb: bool = False  # x86 force_dtb effect (spec 2.7.1 step 5)
    # Additions beyond the published contract, all with neutral defaults:
    host_dtb_bytes: int = 0x1000  # fdt_totalsize of the host DTB when host_booted_with_dtb
    ima_buffer_bytes: int = 0x1000  # memsz of the mainline IMA measurement segment (inferred size)
    arm64_mixed_endian: bool = True  # system_supports_mixed_endian()
    arm64_page_sizes: tuple[int, ...] = (4096, 16384, 65536)  # translation granules the CPU has

    @classmethod
    def from_settings(cls, sim: SimulatorSettings) -> KexecEnv:
        """System RAM = [0, memory_bytes) minus the multikernel pool range."""
        pool_start = min(sim.pool_base, sim.memory_bytes)
        pool_end = min(sim.pool_base + sim.pool_bytes, sim.memory_bytes)
        ram = tuple((base, end - base) for base, end in ((0, pool_start), (pool_end, sim.memory_bytes)) if end > base)
        # v2 reserves the pool from memblock at boot, so it is not part of totalram; the tree grows
        # its pool from the page allocator, where allocated pages still count (spec 3.1).
        total = sim.memory_bytes - (pool_end - pool_start) if sim.kernel_profile == "rfc-v2" else sim.memory_bytes
        return cls(
            profile=sim.kernel_profile,
            arch=sim.arch,
            five_level_paging=sim.five_level_paging,
            kexec_sig_enforced=sim.kexec_sig_enforced,
            lockdown=sim.lockdown,
            purgatory_bytes=sim.purgatory_bytes,
            bzimage_policy=sim.bzimage_policy,
            mk_ipi_abi_version=sim.mk_ipi_abi_version,
            system_ram=ram,
            total_ram_bytes=total,
        )

"""The loader environment a host supplies, read through the kernel interface (DESIGN "Two backends")."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import GiB, MakeHost

from mkd.backends.host.loader_env import read_loader_env, system_ram
from mkd.backends.host.procfs import Procfs
from mkd.backends.kernel_io import OsKernelIO


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
@pytest.mark.parametrize("enforced", [False, True])
def test_client_reads_the_simulators_environment(make_host: MakeHost, profile: str, enforced: bool) -> None:
    host = make_host(profile, five_level_paging=enforced, kexec_sig_enforced=enforced)
    read = host.backend.loader_env()
    configured = host.kernel.loader_env
    # What the interface shows comes back exactly; what it cannot show keeps the seed's defaults.
    assert (read.profile, read.arch) == (configured.profile, configured.arch)
    assert read.system_ram == configured.system_ram
    assert read.total_ram_bytes == configured.total_ram_bytes
    assert read.five_level_paging is enforced and read.kexec_sig_enforced is enforced
    assert replace(read, purgatory_bytes=configured.purgatory_bytes) == configured


def _machine(root: Path, *, iomem: str, cpuinfo: str = "", lockdown: str = "[none] integrity\n") -> OsKernelIO:
    (root / "proc").mkdir()
    (root / "sys" / "kernel" / "security").mkdir(parents=True)
    (root / "proc" / "iomem").write_text(iomem)
    (root / "proc" / "cpuinfo").write_text(cpuinfo)
    (root / "proc" / "meminfo").write_text("MemTotal:       8388608 kB\n")
    (root / "sys" / "kernel" / "security" / "lockdown").write_text(lockdown)
    return OsKernelIO(proc_root=str(root / "proc"), sys_root=str(root / "sys"), sysfs_root=str(root / "mk"))


def test_host_memory_map_is_system_ram_minus_the_pool(tmp_path: Path) -> None:
    io = _machine(
        tmp_path,
        iomem=(
            "00000000-00000fff : Reserved\n"
            "00001000-0009ffff : System RAM\n"
            "00100000-1ffffffff : System RAM\n"
            "  01000000-01ffffff : Kernel code\n"
            "  100000000-13fffffff : Multikernel Memory Pool\n"
        ),
    )
    assert system_ram(Procfs(io)) == (
        (0x1000, 0x9F000),
        (0x100000, 0x1_0000_0000 - 0x100000),
        (0x1_4000_0000, 0xC000_0000),
    )
    env = read_loader_env(io, "rfc-v2", "x86_64")
    assert env.total_ram_bytes == 8 * GiB and not env.five_level_paging and not env.kexec_sig_enforced


@pytest.mark.parametrize(
    ("lockdown", "config", "cpu_flags", "enforced", "la57"),
    [
        ("[none] integrity confidentiality\n", None, "fpu lm", False, False),
        ("none [integrity] confidentiality\n", None, "fpu lm la57", True, True),
        ("[none] integrity\n", b"CONFIG_KEXEC_SIG_FORCE=y\n", "fpu", True, False),
    ],
)
def test_host_enforcement_and_paging(
    tmp_path: Path, lockdown: str, config: bytes | None, cpu_flags: str, enforced: bool, la57: bool
) -> None:
    io = _machine(tmp_path, iomem="", cpuinfo=f"processor\t: 0\nflags\t\t: {cpu_flags}\n\n", lockdown=lockdown)
    if config is not None:
        (tmp_path / "proc" / "config.gz").write_bytes(gzip.compress(config))
    env = read_loader_env(io, "tree", "x86_64")
    assert (env.kexec_sig_enforced, env.five_level_paging) == (enforced, la57)

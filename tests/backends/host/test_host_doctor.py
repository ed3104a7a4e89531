"""mkd.doctor: each unready condition on a /proc and /sys tree in tmpfs gives its finding and fix.

Doctor reads a host's real files (it runs before any kernel client), so these trees are files.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from mkd.backends.host.signature import pe_signature_size
from mkd.config import Settings, load_settings
from mkd.devicetree.build import build_root_tree
from mkd.doctor import Finding, HostNotReady, diagnose, has_cap_sys_boot, require_host_ready
from mkd.kernel_types import MemChunk, PoolSpec

CAP_SYS_BOOT_ONLY = 1 << 22
GiB = 1 << 30


def make_proc(proc: Path) -> None:
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text("MemTotal:       32768000 kB\nMemFree:         1000 kB\n")
    (proc / "cpuinfo").write_text("".join(f"processor\t: {n}\napicid\t\t: {n * 2}\n\n" for n in range(4)))


@dataclass
class Machine:
    settings: Settings
    sysfs: Path
    proc: Path
    sys_root: Path

    def diagnose(self, **kwargs: object) -> list[Finding]:
        return diagnose(self.settings, sysfs=self.sysfs, proc=self.proc, sys_root=self.sys_root, **kwargs)  # type: ignore[arg-type]

    def failing(self, **kwargs: object) -> dict[str, Finding]:
        return {f.check: f for f in self.diagnose(**kwargs) if not f.ok}

    def set_caps(self, value: int) -> None:
        (self.proc / "self" / "status").write_text(f"Name:\tmkd\nCapInh:\t0\nCapEff:\t{value:016x}\n")


def _ready_tree_machine(base: Path) -> Machine:
    sysfs, proc, sys_root = base / "mk", base / "proc", base / "sys"
    make_proc(proc)
    sysfs.mkdir()
    (sysfs / "overlays").mkdir()
    (sysfs / "device_tree").write_bytes(
        build_root_tree(
            "tree",
            PoolSpec(cpus=(1, 2), memory_base=0, memory_bytes=GiB),
            chunks=[MemChunk(0x2000_0000, GiB)],
            free_cpus=[1, 2],
        )
    )
    (proc / "self" / "mounts").write_text(f"sysfs /sys sysfs rw 0 0\nnone {sysfs} multikernel rw,relatime 0 0\n")
    (proc / "filesystems").write_text("nodev\tsysfs\nnodev\tmultikernel\n")
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "kexec_load_disabled").write_text("0\n")
    (proc / "sys" / "kernel" / "kexec_load_limit_reboot").write_text("-1\n")
    (proc / "cmdline").write_text("BOOT_IMAGE=/vmlinuz root=/dev/sda1 quiet\n")
    (sys_root / "kernel" / "security").mkdir(parents=True)
    (sys_root / "kernel" / "security" / "lockdown").write_text("[none] integrity confidentiality\n")
    settings = load_settings(overrides={"daemon.state_dir": base / "state", "daemon.sysfs_root": sysfs})
    machine = Machine(settings, sysfs, proc, sys_root)
    machine.set_caps(0x000001FFFFFFFFFF)
    return machine


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return _ready_tree_machine(tmp_path)


def _pe_image(path: Path, *, signed: bool) -> Path:
    data = bytearray(0x400)
    data[0:2] = b"MZ"
    struct.pack_into("<I", data, 0x3C, 0x80)
    data[0x80:0x84] = b"PE\0\0"
    optional = 0x80 + 24
    struct.pack_into("<H", data, optional, 0x20B)
    struct.pack_into("<I", data, optional + 108, 16)
    if signed:
        struct.pack_into("<II", data, optional + 112 + 8 * 4, 0x300, 0x100)
    path.write_bytes(bytes(data))
    return path


def test_ready_machine_has_no_failing_finding(machine: Machine) -> None:
    findings = machine.diagnose()
    assert [f.check for f in findings] == ["multikernel", "cap_sys_boot", "kexec_enabled", "baseline", "signatures"]
    assert all(f.ok for f in findings), findings
    require_host_ready(machine.settings, sysfs=machine.sysfs, proc=machine.proc, sys_root=machine.sys_root)


def test_not_mounted(machine: Machine) -> None:
    (machine.proc / "self" / "mounts").write_text("sysfs /sys sysfs rw 0 0\n")
    finding = machine.failing()["multikernel"]
    assert f"mount -t multikernel none {machine.sysfs}" in finding.fix
    assert "baseline" not in {f.check for f in machine.diagnose()}


def test_no_multikernel_support(tmp_path: Path, machine: Machine) -> None:
    (machine.proc / "filesystems").write_text("nodev\tsysfs\n")
    finding = diagnose(machine.settings, sysfs=tmp_path / "absent", proc=machine.proc, sys_root=machine.sys_root)[0]
    assert not finding.ok and "CONFIG_MULTIKERNEL" in finding.fix


def test_cap_sys_boot_from_capeff(machine: Machine) -> None:
    machine.set_caps(CAP_SYS_BOOT_ONLY)
    assert has_cap_sys_boot(machine.proc)
    machine.set_caps(0x1FFFFFFFFFF & ~CAP_SYS_BOOT_ONLY)
    assert not has_cap_sys_boot(machine.proc)
    finding = machine.failing()["cap_sys_boot"]
    assert "CAP_SYS_BOOT" in finding.fix
    assert machine.failing(euid_caps=lambda: True).get("cap_sys_boot") is None


def test_kexec_load_disabled(machine: Machine) -> None:
    (machine.proc / "sys" / "kernel" / "kexec_load_disabled").write_text("1\n")
    finding = machine.failing()["kexec_enabled"]
    assert "kexec_load_disabled" in finding.detail and "reboot" in finding.fix


def test_kexec_load_limit_exhausted(machine: Machine) -> None:
    (machine.proc / "sys" / "kernel" / "kexec_load_limit_reboot").write_text("0\n")
    assert "kexec_load_limit_reboot" in machine.failing()["kexec_enabled"].detail


def test_tree_without_baseline(machine: Machine) -> None:
    (machine.sysfs / "device_tree").write_bytes(build_root_tree("tree", None))
    assert "PUT /v1/pool" in machine.failing()["baseline"].fix


def test_v2_needs_the_boot_pool(machine: Machine) -> None:
    (machine.sysfs / "overlays").rmdir()
    (machine.sysfs / "device_tree").write_text("Write multikernel device tree here to propagate to instances\n")
    assert "mkkernel_pool=" in machine.failing()["baseline"].fix
    (machine.proc / "iomem").write_text("00000000-00000000 : Multikernel Memory Pool\n")
    assert "baseline" not in machine.failing()


@pytest.mark.parametrize("how", ["lockdown", "cmdline", "config"])
def test_unsigned_image_under_enforcement_fails(machine: Machine, tmp_path: Path, how: str) -> None:
    if how == "lockdown":
        (machine.sys_root / "kernel" / "security" / "lockdown").write_text("none [integrity] confidentiality\n")
    elif how == "cmdline":
        (machine.proc / "cmdline").write_text("root=/dev/sda1 lockdown=confidentiality\n")
    else:
        with gzip.open(machine.proc / "config.gz", "wt") as config:
            config.write("CONFIG_MULTIKERNEL=y\nCONFIG_KEXEC_SIG_FORCE=y\n")
    assert "signatures" not in machine.failing()  # no image given: enforcement alone is fine
    unsigned = _pe_image(tmp_path / "unsigned.efi", signed=False)
    finding = machine.failing(kernel_image=unsigned)["signatures"]
    assert "no PE signature" in finding.detail and "sbsign" in finding.fix
    signed = _pe_image(tmp_path / "signed.efi", signed=True)
    assert "signatures" not in machine.failing(kernel_image=signed)


def test_unsigned_image_without_enforcement_is_fine(machine: Machine, tmp_path: Path) -> None:
    assert "signatures" not in machine.failing(kernel_image=_pe_image(tmp_path / "k", signed=False))


def test_pe_signature_size() -> None:
    assert pe_signature_size(b"\x7fELF" + b"\0" * 100) is None
    assert pe_signature_size(b"MZ" + b"\0" * 10) is None


def test_require_host_ready_lists_every_failure_with_its_fix(machine: Machine) -> None:
    (machine.proc / "sys" / "kernel" / "kexec_load_disabled").write_text("1\n")
    (machine.sysfs / "device_tree").write_bytes(build_root_tree("tree", None))
    with pytest.raises(HostNotReady) as raised:
        require_host_ready(
            machine.settings,
            sysfs=machine.sysfs,
            proc=machine.proc,
            sys_root=machine.sys_root,
            euid_caps=lambda: False,
        )
    message = str(raised.value)
    assert message.startswith("this host is not ready for the multikernel host backend:")
    for check in ("cap_sys_boot", "kexec_enabled", "baseline"):
        assert f"  - {check}: " in message
    assert message.count("    fix: ") == 3
    assert [f.check for f in raised.value.findings] == ["cap_sys_boot", "kexec_enabled", "baseline"]

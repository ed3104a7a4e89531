"""Is this machine ready for `--backend host`? Each check is a Finding with the fix when it fails."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mkd.backends.host.loader_env import signature_enforcement as read_signature_enforcement
from mkd.backends.host.procfs import POOL_IOMEM_NAME
from mkd.backends.host.readback import parse_pool_dtb
from mkd.backends.host.signature import image_is_pe_signed
from mkd.backends.kernel_io import OsKernelIO
from mkd.config import Settings
from mkd.errors import KernelError

CAP_SYS_BOOT = 22
MOUNT_COMMAND = "mount -t multikernel none {path}"


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


class HostNotReady(Exception):
    """The host cannot run the host backend; the message lists every failing check and its fix."""

    def __init__(self, message: str, findings: list[Finding] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.findings = list(findings or [])


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _mount_types(proc: Path) -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/self/mounts."""
    mounts: dict[str, str] = {}
    for line in (_read(proc / "self" / "mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            # /proc/self/mounts escapes spaces in paths as \040.
            mounts[fields[1].replace("\\040", " ")] = fields[2]
    return mounts


def check_multikernel_fs(sysfs: Path, proc: Path) -> Finding:
    mounted_as = _mount_types(proc).get(str(sysfs))
    if mounted_as == "multikernel" and (sysfs / "device_tree").exists():
        return Finding("multikernel", True, f"multikernel filesystem mounted at {sysfs}")
    supported = "multikernel" in (_read(proc / "filesystems") or "").split()
    if supported or sysfs.is_dir():
        return Finding(
            "multikernel",
            False,
            f"the kernel supports multikernel but nothing is mounted at {sysfs}",
            f"run `{MOUNT_COMMAND.format(path=sysfs)}` (or add it to /etc/fstab)",
        )
    return Finding(
        "multikernel",
        False,
        "the running kernel has no multikernel support (no `multikernel` filesystem type)",
        "boot a kernel built with CONFIG_MULTIKERNEL=y (the multikernel/linux tree or the RFC v2 series), "
        f"then `{MOUNT_COMMAND.format(path=sysfs)}`",
    )


def has_cap_sys_boot(proc: Path) -> bool:
    for line in (_read(proc / "self" / "status") or "").splitlines():
        key, _, value = line.partition(":")
        if key == "CapEff":
            return bool(int(value.strip(), 16) >> CAP_SYS_BOOT & 1)
    return False


def check_cap_sys_boot(euid_caps: Callable[[], bool]) -> Finding:
    # spec 2.2 and 6.2: kexec_file_load and reboot both answer EPERM without CAP_SYS_BOOT.
    if euid_caps():
        return Finding("cap_sys_boot", True, "the daemon has CAP_SYS_BOOT")
    return Finding(
        "cap_sys_boot",
        False,
        "the daemon lacks CAP_SYS_BOOT: every load, unload, start and stop would fail with EPERM",
        "run mkd as root, or grant the capability (systemd: AmbientCapabilities=CAP_SYS_BOOT)",
    )


def check_kexec_enabled(proc: Path) -> list[Finding]:
    # spec 2.2 step 1: kexec_load_disabled or an exhausted load limit make every load EPERM.
    findings = []
    if (_read(proc / "sys" / "kernel" / "kexec_load_disabled") or "0").strip() == "1":
        findings.append(
            Finding(
                "kexec_enabled",
                False,
                "kernel.kexec_load_disabled is 1: every kexec_file_load fails with EPERM",
                "the setting is one-way until reboot: remove kernel.kexec_load_disabled=1 from "
                "/etc/sysctl.conf and /etc/sysctl.d, then reboot",
            )
        )
    limit = (_read(proc / "sys" / "kernel" / "kexec_load_limit_reboot") or "").strip()
    if limit == "0":
        findings.append(
            Finding(
                "kexec_enabled",
                False,
                "kernel.kexec_load_limit_reboot is 0: no kexec load is left until reboot (EPERM)",
                "reboot with kernel.kexec_load_limit_reboot unset or -1",
            )
        )
    return findings or [Finding("kexec_enabled", True, "kexec loads are allowed")]


def check_baseline(sysfs: Path, proc: Path) -> Finding:
    if (sysfs / "overlays").is_dir():
        # tree: the pool read-back names its CPUs once a baseline was written (spec 5.1).
        try:
            pool = parse_pool_dtb((sysfs / "device_tree").read_bytes())
        except (OSError, KernelError) as exc:
            return Finding(
                "baseline",
                False,
                f"cannot read the pool device tree at {sysfs / 'device_tree'}: {exc}",
                "check that the multikernel filesystem is mounted and readable by the daemon",
            )
        if pool.cpus:
            cpus = ",".join(map(str, pool.cpus))
            return Finding("baseline", True, f"baseline applied: pool CPUs {cpus}, {len(pool.chunks)} chunks")
        return Finding(
            "baseline",
            False,
            "no baseline written: the pool has no CPUs, so no instance can be created",
            "apply a pool: `PUT /v1/pool` (or `mkd pool apply`) with the CPUs and memory to reserve",
        )
    # rfc-v2: the pool is reserved at boot and shows in /proc/iomem (spec 3.1).
    if POOL_IOMEM_NAME in (_read(proc / "iomem") or ""):
        return Finding("baseline", True, f"boot pool present ({POOL_IOMEM_NAME} in /proc/iomem)")
    return Finding(
        "baseline",
        False,
        f"no {POOL_IOMEM_NAME} in /proc/iomem: the kernel reserved no memory for instances",
        "boot with mkkernel_pool=SIZE@ADDR on the kernel command line (e.g. mkkernel_pool=4G@0x100000000)",
    )


def signature_enforcement(proc: Path, sys_root: Path) -> list[str]:
    """The reasons kexec_file_load will demand a valid signature; empty when it will not.

    The same reading the host client's loader environment makes (backends/host/loader_env.py).
    """
    return read_signature_enforcement(OsKernelIO(proc_root=str(proc), sys_root=str(sys_root)))


def check_signatures(proc: Path, sys_root: Path, kernel_image: Path | None) -> Finding:
    # spec 2.7.1 step 3: with enforcement an unsigned image fails (ENODATA/ELIBBAD/EKEYREJECTED,
    # EPERM under lockdown); the tree's vmlinux loader has no verify_sig at all.
    reasons = signature_enforcement(proc, sys_root)
    if not reasons:
        return Finding("signatures", True, "kexec signature enforcement is off")
    why = "; ".join(reasons)
    if kernel_image is None:
        return Finding("signatures", True, f"kexec signature enforcement is on ({why}): kernels must be PE-signed")
    try:
        signed = image_is_pe_signed(kernel_image)
    except OSError as exc:
        return Finding(
            "signatures", False, f"cannot read {kernel_image}: {exc.strerror}", "pass a readable kernel image"
        )
    if signed:
        return Finding("signatures", True, f"enforcement on ({why}) and {kernel_image} carries a PE signature")
    return Finding(
        "signatures",
        False,
        f"kexec signature enforcement is on ({why}) and {kernel_image} has no PE signature: loads will fail",
        "sign the image (sbsign --key K --cert C) with a key in the kernel's secondary or platform "
        "keyring, or boot without lockdown / CONFIG_KEXEC_SIG_FORCE",
    )


def diagnose(
    settings: Settings,
    *,
    sysfs: Path | None = None,
    proc: Path | None = None,
    sys_root: Path | None = None,
    euid_caps: Callable[[], bool] | None = None,
    kernel_image: Path | None = None,
) -> list[Finding]:
    sysfs = sysfs or settings.daemon.sysfs_root
    proc = proc or Path("/proc")
    sys_root = sys_root or Path("/sys")
    proc_root = proc
    capabilities = euid_caps or (lambda: has_cap_sys_boot(proc_root))
    filesystem = check_multikernel_fs(sysfs, proc)
    findings = [filesystem, check_cap_sys_boot(capabilities), *check_kexec_enabled(proc)]
    if filesystem.ok:
        # Without the filesystem the profile is unknown; the first finding already says why.
        findings.append(check_baseline(sysfs, proc))
    findings.append(check_signatures(proc, sys_root, kernel_image))
    return findings


def not_ready_message(failing: list[Finding]) -> str:
    lines = ["this host is not ready for the multikernel host backend:"]
    for finding in failing:
        lines.append(f"  - {finding.check}: {finding.detail}")
        lines.append(f"    fix: {finding.fix}")
    return "\n".join(lines)


def require_host_ready(
    settings: Settings,
    *,
    sysfs: Path | None = None,
    proc: Path | None = None,
    sys_root: Path | None = None,
    euid_caps: Callable[[], bool] | None = None,
    kernel_image: Path | None = None,
) -> None:
    """Raise HostNotReady listing every failing check with its fix; return when all pass."""
    findings = diagnose(
        settings, sysfs=sysfs, proc=proc, sys_root=sys_root, euid_caps=euid_caps, kernel_image=kernel_image
    )
    failing = [finding for finding in findings if not finding.ok]
    if failing:
        raise HostNotReady(not_ready_message(failing), failing)

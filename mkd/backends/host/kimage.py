"""Describe a loaded kimage from what the host can see: /proc/kimage plus the load record.

The kernel does not expose segment addresses (spec 2.6 lists only a count), so `segments` is
always empty on the host; `start` comes from /proc/kimage when it is readable, else 0.
"""

from __future__ import annotations

from pathlib import Path

from mkd.backends.host.procfs import KimageRow
from mkd.backends.host.state import LoadRecord
from mkd.kernel_types import KernelProfile, Kimage

ELF_MAGIC = b"\x7fELF"
BZIMAGE_MAGIC = b"HdrS"  # x86 boot protocol header, offset 0x202
ARM64_IMAGE_MAGIC = b"ARM\x64"  # arm64 Image header, offset 0x38


def image_loader(path: Path) -> str:
    """Which kexec loader will take the file (spec 2.7.2-2.7.4), by its magic numbers."""
    try:
        with open(path, "rb") as image:
            head = image.read(0x240)
    except OSError:
        return "unknown"
    if head.startswith(ELF_MAGIC):
        return "vmlinux"
    if head[0x202:0x206] == BZIMAGE_MAGIC:
        return "bzImage64"
    if head[0x38:0x3C] == ARM64_IMAGE_MAGIC:
        return "arm64-image"
    return "unknown"


def describe_kimage(profile: KernelProfile, record: LoadRecord | None, row: KimageRow | None) -> Kimage:
    cmdline = record.cmdline if record is not None else (row.cmdline or "") if row is not None else ""
    loader = record.loader if record is not None else ""
    return Kimage(
        kernel_sha256=record.kernel_sha256 if record is not None else "",
        initrd_sha256=record.initrd_sha256 if record is not None else None,
        cmdline=cmdline,
        segments=(),
        start=row.start if row is not None else 0,
        loader=loader,
        # spec 2.7.5 option a: a tree x86 bzImage loads but has no mk_kernel_entry to spawn.
        spawnable=not (profile == "tree" and loader == "bzImage64"),
    )

"""Describe a loaded kimage from what the kernel shows: /proc/kimage plus the load record.

A real kernel does not expose segment addresses (spec 2.6 lists only a count), so the client
plans them at load time with the daemon's own loaders over the instance's chunks and says so
(`segments_source = computed`). The simulator shows its segments in a file of its own; read
from there they are the kernel's (`segments_source = kernel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mkd.backends.host.procfs import KimageRow
from mkd.backends.host.state import LoadRecord
from mkd.backends.kernel_io import SEGMENTS_PATH, KernelIO
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile, Kimage, LoadRequest, MemChunk, Segment
from mkd.kexec.env import KexecEnv
from mkd.kexec.kexec_file import prepare_kimage
from mkd.kexec.mem_pool import GenPool

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


def compute_segments(env: KexecEnv, request: LoadRequest, memory: Sequence[MemChunk]) -> tuple[Segment, ...]:
    """The segments the kernel's loaders place for `request` in an instance pool of `memory`.

    Run right after the kernel accepted the same load, so the pool is as the kernel found it;
    () when the plan fails (the daemon's loaders refuse what the kernel took).
    """
    try:
        planned = prepare_kimage(env, request, GenPool((chunk.base, chunk.bytes) for chunk in memory))
    except KernelError:
        return ()
    return tuple(planned.to_kimage(kernel_sha256="", initrd_sha256=None).segments)


def read_kernel_segments(io: KernelIO) -> dict[int, tuple[Segment, ...]] | None:
    """Segments by instance id from a kernel that shows them; None when the kernel does not."""
    try:
        text = io.read(SEGMENTS_PATH).decode()
    except OSError:
        return None
    found: dict[int, list[Segment]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 8:
            continue
        mk_id, _index, kind, mem, memsz, bufsz, in_pool, sha256 = fields
        found.setdefault(int(mk_id), []).append(
            Segment(kind=kind, mem=int(mem, 16), memsz=int(memsz, 16), bufsz=int(bufsz, 16), sha256=sha256,
                    in_pool=in_pool == "1")
        )
    return {mk_id: tuple(segments) for mk_id, segments in found.items()}


def describe_kimage(
    profile: KernelProfile,
    record: LoadRecord | None,
    row: KimageRow | None,
    kernel_segments: dict[int, tuple[Segment, ...]] | None,
) -> Kimage:
    cmdline = record.cmdline if record is not None else (row.cmdline or "") if row is not None else ""
    loader = record.loader if record is not None else ""
    if kernel_segments is not None and row is not None:
        segments, source = kernel_segments.get(row.mk_id, ()), "kernel"
    else:
        segments, source = (record.segments if record is not None else ()), "computed"
    return Kimage(
        kernel_sha256=record.kernel_sha256 if record is not None else "",
        initrd_sha256=record.initrd_sha256 if record is not None else None,
        cmdline=cmdline,
        segments=segments,
        start=row.start if row is not None else 0,
        loader=loader,
        # spec 2.7.5 option a: a tree x86 bzImage loads but has no mk_kernel_entry to spawn.
        spawnable=not (profile == "tree" and loader == "bzImage64"),
        segments_source="kernel" if source == "kernel" else "computed",
    )

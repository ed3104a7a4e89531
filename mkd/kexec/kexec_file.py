"""kexec_file_load's image path: from (kernel, initrd, cmdline, flags) to a placed kimage.

Covers spec 2.7.1 steps 1-11 with 3.3 placement and 3.4 control pages. The instance checks (id,
lookup, busy) and the association are the simulated kernel's; this module only prepares the image.
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass, field
from typing import Any

from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE, Kimage, LoadRequest, Segment
from mkd.kexec.env import KexecEnv
from mkd.kexec.file_read import KexecFile, read_kexec_file
from mkd.kexec.flags import (
    KEXEC_FILE_FORCE_DTB,
    KEXEC_FILE_NO_INITRAMFS,
    KEXEC_FILE_ON_CRASH,
    KEXEC_MULTIKERNEL,
)
from mkd.kexec.image_format import HEAD_BYTES
from mkd.kexec.kernel_pages import KernelPages
from mkd.kexec.loader_api import KexecLoader, LoadContext, ProbeInput
from mkd.kexec.loaders import loaders_for
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.placement import CONTROL_PAGE_KINDS, ULONG_MAX, KimageSegments
from mkd.kexec.sanity import sanity_check_segment_list
from mkd.kexec.segments import KexecBuf, PlannedSegment, SegmentSource

__all__ = [
    "CONTROL_PAGE_KINDS",
    "KernelPages",
    "KexecEnv",
    "PlannedSegment",
    "PreparedKimage",
    "SegmentSource",
    "prepare_kimage",
    "release_kimage",
]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass
class PreparedKimage:
    loader: str  # "bzImage64", "vmlinux", "arm64-image"
    segments: list[PlannedSegment]
    control_pages: list[tuple[int, int, bool]]  # (addr, size, in_pool): control code page, swap page
    start: int
    spawnable: bool
    cmdline: bytes
    mk_boot_params: int | None
    mk_kernel_entry: int | None
    # Pool memory of segments a loader rolled back; the image holds it until kimage_free.
    held: list[tuple[int, int]] = field(default_factory=list)

    @property
    def nr_segments(self) -> int:
        return len(self.segments)

    def pool_allocations(self) -> list[tuple[int, int]]:
        """Every (addr, size) this image holds in the instance pool."""
        taken = [segment.pool_alloc for segment in self.segments if segment.pool_alloc is not None]
        return taken + self.held + [(addr, size) for addr, size, in_pool in self.control_pages if in_pool]

    def to_kimage(self, *, kernel_sha256: str, initrd_sha256: str | None) -> Kimage:
        segments = [
            Segment(
                kind=segment.kind,
                mem=segment.mem,
                memsz=segment.memsz,
                bufsz=segment.bufsz,
                sha256=segment.source.sha256(),
                in_pool=segment.in_pool,
            )
            for segment in self.segments
        ]
        segments += [
            Segment(kind=kind, mem=addr, memsz=size, bufsz=0, sha256=_EMPTY_SHA256, in_pool=in_pool)
            for kind, (addr, size, in_pool) in zip(CONTROL_PAGE_KINDS, self.control_pages, strict=False)
        ]
        return Kimage(
            kernel_sha256=kernel_sha256,
            initrd_sha256=initrd_sha256,
            cmdline=self.cmdline.split(b"\0", 1)[0].decode("utf-8", errors="replace"),
            segments=tuple(segments),
            start=self.start,
            loader=self.loader,
            spawnable=self.spawnable,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "loader": self.loader,
            "segments": [segment.to_json() for segment in self.segments],
            "control_pages": [list(page) for page in self.control_pages],
            "start": self.start,
            "spawnable": self.spawnable,
            "cmdline": self.cmdline.hex(),
            "mk_boot_params": self.mk_boot_params,
            "mk_kernel_entry": self.mk_kernel_entry,
            "held": [list(pair) for pair in self.held],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreparedKimage:
        return cls(
            loader=str(data["loader"]),
            segments=[PlannedSegment.from_json(item) for item in data["segments"]],
            control_pages=[(int(a), int(s), bool(p)) for a, s, p in data["control_pages"]],
            start=int(data["start"]),
            spawnable=bool(data["spawnable"]),
            cmdline=bytes.fromhex(data["cmdline"]),
            mk_boot_params=data.get("mk_boot_params"),
            mk_kernel_entry=data.get("mk_kernel_entry"),
            held=[(int(a), int(s)) for a, s in data.get("held", [])],
        )


def _probe(env: KexecEnv, kernel: KexecFile, head: bytes, multikernel: bool) -> KexecLoader:
    """kexec_image_probe_default: the first loader whose probe passes; else the last probe's errno."""
    failure = KernelError(errno.ENOEXEC, "No kexec loader for this image")  # only for an empty list
    probe_input = ProbeInput(env=env, kernel=kernel, head=head, multikernel=multikernel)
    for loader in loaders_for(env):
        try:
            loader.probe(probe_input)
        except KernelError as exc:
            failure = exc
            continue
        return loader
    raise failure


def _add_ima_buffer(env: KexecEnv, segments: KimageSegments, multikernel: bool) -> tuple[int, int] | None:
    """ima_add_kexec_buffer (spec 2.7.1 step 7): mainline adds it for every image, the tree skips
    multikernel images. Its failure is only logged by the kernel."""
    if not env.ima_kexec or (multikernel and env.profile == "tree"):
        return None
    size = env.ima_buffer_bytes
    try:
        segment = segments.add_buffer(
            KexecBuf(
                kind="ima",
                source=SegmentSource(length=size),
                bufsz=size,
                memsz=size,
                buf_align=PAGE_SIZE,
                buf_min=0,
                buf_max=ULONG_MAX,
                top_down=True,
            )
        )
    except KernelError:
        return None
    return segment.mem, segment.memsz


def prepare_kimage(
    env: KexecEnv,
    request: LoadRequest,
    pool: GenPool,
    *,
    kernel_pages: KernelPages | None = None,
    free_on_failure: bool = True,
) -> PreparedKimage:
    """kimage_file_prepare_segments + sanity check + control pages, mutating `pool`.

    On any failure everything taken from `pool` is given back (unless `free_on_failure` is False:
    the seed's error path, which frees none of it) and KernelError is raised. `kernel_pages` is
    where control pages come from when they are not pool pages.
    """
    flags = request.flags
    if flags & KEXEC_FILE_ON_CRASH:
        raise KernelError(errno.EOPNOTSUPP, "crash images are not simulated")
    multikernel = bool(flags & KEXEC_MULTIKERNEL)
    segments = KimageSegments(env, pool, multikernel=multikernel, kernel_pages=kernel_pages)
    try:
        # Step 1: read the kernel (EBADF / EINVAL / EFBIG).
        kernel = read_kexec_file(request.kernel, "kernel")
        head = kernel.read(0, HEAD_BYTES)
        # Step 2: probe the arch's loaders in order.
        loader = _probe(env, kernel, head, multikernel)
        # Step 3: signature check; no simulated loader has verify_sig, so the check always fails:
        # enforced -> its errno; else lockdown(kexec) -> EPERM; else the failure is ignored.
        if not loader.has_verify_sig:
            if env.kexec_sig_enforced:
                raise KernelError(errno.EKEYREJECTED, f"{loader.name} loader cannot verify signatures")
            if env.lockdown != "none":
                raise KernelError(errno.EPERM, f"kernel is locked down ({env.lockdown}): unsigned image refused")
        # Step 4: the initrd, unless KEXEC_FILE_NO_INITRAMFS; then initrd_fd is never looked at.
        initrd = None if flags & KEXEC_FILE_NO_INITRAMFS else read_kexec_file(request.initrd, "initrd")
        # Step 5 (tree): 0x20 doubles as FORCE_DTB; NO_CMA has no effect on multikernel placement.
        force_dtb = env.profile == "tree" and bool(flags & KEXEC_FILE_FORCE_DTB)
        # Step 6: cmdline_len 0 is allowed; otherwise the last byte must be NUL.
        cmdline = request.cmdline if request.cmdline else None
        if cmdline is not None and cmdline[-1] != 0:
            raise KernelError(errno.EINVAL, "command line must end with a NUL byte")
        # Step 7: IMA buffer. Step 8: KHO adds nothing while KHO is inactive.
        ima_buffer = _add_ima_buffer(env, segments, multikernel)
        # Step 9: the loader.
        result = loader.load(
            LoadContext(
                env=env,
                segments=segments,
                kernel=kernel,
                head=head,
                initrd=initrd,
                cmdline=cmdline,
                multikernel=multikernel,
                force_dtb=force_dtb,
                instance_memory=tuple(pool.chunks),
                ima_buffer=ima_buffer,
            )
        )
        # Step 10: sanity_check_segment_list.
        sanity_check_segment_list(env, segments.segments)
        # Step 11: control-code page, then the swap page.
        segments.alloc_control_pages()
    except BaseException:
        if free_on_failure:
            segments.release()
        raise
    return PreparedKimage(
        loader=loader.name,
        segments=list(segments.segments),
        control_pages=list(segments.control_pages),
        start=result.start,
        spawnable=result.spawnable,
        cmdline=cmdline or b"",
        mk_boot_params=result.mk_boot_params,
        mk_kernel_entry=result.mk_kernel_entry,
        held=list(segments.held),
    )


def release_kimage(kimage: PreparedKimage, pool: GenPool) -> None:
    """kimage_free: return every pool allocation of the image."""
    for addr, size in kimage.pool_allocations():
        pool.free(addr, size)

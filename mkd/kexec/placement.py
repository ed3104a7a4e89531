"""kexec_add_buffer, segment placement and control pages (spec 2.7.1, 3.3, 3.4).

Multikernel segments come from the instance pool (kexec_alloc_multikernel). rfc-v2 falls back to
the mainline System RAM walk on any pool failure; the tree returns the error. Everything taken from
the pool is tracked so a failed load can give it all back.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from mkd.errors import KernelError
from mkd.kernel_types import PAGE_SIZE
from mkd.kexec.env import KexecEnv
from mkd.kexec.kernel_pages import KernelPages
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.segments import KexecBuf, PlannedSegment

KEXEC_SEGMENT_MAX = 16
CONTROL_PAGE_KINDS = ("control", "swap")  # the control-code page, then the swap page (spec 2.7.1 step 11)
KEXEC_CONTROL_PAGE_SIZE = 4096
ULONG_MAX = (1 << 64) - 1


def round_up(value: int, align: int) -> int:
    return (value + align - 1) & ~(align - 1)


def align_down(value: int, align: int) -> int:
    return value & ~(align - 1)


def is_aligned(value: int, align: int) -> bool:
    """IS_ALIGNED(): a mask test, as in the kernel."""
    return value & (align - 1) == 0


def _overlapping(ranges: Iterable[tuple[int, int]], first: int, last: int) -> tuple[int, int] | None:
    """kimage_is_destination_range over (mem, memsz) ranges and the inclusive [first, last]."""
    for mem, memsz in ranges:
        if memsz and last >= mem and first <= mem + memsz - 1:
            return mem, memsz
    return None


class KimageSegments:
    """The segment list of one kimage under construction, plus its control pages."""

    def __init__(
        self, env: KexecEnv, pool: GenPool, *, multikernel: bool, kernel_pages: KernelPages | None = None
    ) -> None:
        self.env = env
        self.pool = pool
        self.multikernel = multikernel
        # Without the simulator's view of every pool, kernel RAM is what the env says minus this pool.
        self.kernel_pages = kernel_pages or KernelPages(
            ram=env.system_ram or ((0, env.total_ram_bytes),), excluded=list(pool.chunks)
        )
        self.segments: list[PlannedSegment] = []
        self.control_pages: list[tuple[int, int, bool]] = []
        # Pool memory of segments a loader rolled back (image->nr_segments lowered): the image still
        # holds it until it is freed, so a retry finds the next hole (spec 2.7.4, inferred).
        self.held: list[tuple[int, int]] = []

    # -- kexec_add_buffer ----------------------------------------------------------------------

    def add_buffer(self, kbuf: KexecBuf) -> PlannedSegment:
        """kexec_add_buffer (spec 2.7.1): limits, rounding, then kexec_locate_mem_hole."""
        # The "image not in file mode" check cannot fail here: every image is a kexec_file_load one.
        if len(self.segments) >= KEXEC_SEGMENT_MAX:
            raise KernelError(errno.EINVAL, f"too many segments: {KEXEC_SEGMENT_MAX} is the maximum")
        if self.control_pages:
            raise KernelError(errno.EINVAL, "segments cannot be added after the control pages")
        memsz = round_up(kbuf.memsz, PAGE_SIZE)
        buf_align = max(kbuf.buf_align, PAGE_SIZE)
        pool_alloc: tuple[int, int] | None = None
        if kbuf.mem:
            mem = kbuf.mem  # a loader-preset address is kept as is
        else:
            mem, pool_alloc = self._locate_mem_hole(memsz, buf_align, kbuf)
        segment = PlannedSegment(
            kind=kbuf.kind,
            source=kbuf.source,
            bufsz=kbuf.bufsz,
            mem=mem,
            memsz=memsz,
            buf_align=buf_align,
            buf_min=kbuf.buf_min,
            buf_max=kbuf.buf_max,
            top_down=kbuf.top_down,
            in_pool=pool_alloc is not None,
            pool_alloc=pool_alloc,
        )
        self.segments.append(segment)
        return segment

    def _locate_mem_hole(self, memsz: int, buf_align: int, kbuf: KexecBuf) -> tuple[int, tuple[int, int] | None]:
        if self.multikernel:
            try:
                mem = self._alloc_multikernel(memsz, buf_align, kbuf)
                return mem, (mem, memsz)
            except KernelError:
                # spec 3.3: the tree returns the pool's error as is; the v2 seed falls through to
                # the System RAM search on any non-zero return.
                if self.env.profile == "tree":
                    raise
        # KHO scratch and CMA are not active in the simulator (spec 2.7.1 kexec_add_buffer).
        hole = self._walk_system_ram(memsz, buf_align, kbuf.buf_min, kbuf.buf_max, kbuf.top_down)
        if hole is None:
            raise KernelError(errno.EADDRNOTAVAIL, f"no System RAM hole for a {memsz:#x}-byte {kbuf.kind} segment")
        return hole, None

    def _alloc_multikernel(self, memsz: int, buf_align: int, kbuf: KexecBuf) -> int:
        """kexec_alloc_multikernel, checks in the spec 3.3 order; frees what it took on failure."""
        # spec 3.3 step 2: first fit (aligned) in the instance pool; top_down is ignored.
        phys = self.pool.alloc_aligned(memsz, buf_align)
        if phys is None:
            raise KernelError(errno.ENOMEM, f"instance pool has no {memsz:#x} bytes for the {kbuf.kind} segment")
        # spec 3.3 step 3: not aligned to buf_align.
        if not is_aligned(phys, buf_align):
            self.pool.free(phys, memsz)
            raise KernelError(errno.ENOMEM, f"pool address {phys:#x} is not {buf_align:#x}-aligned")
        # spec 3.3 step 4: outside [buf_min, buf_max]; nothing is retried.
        if phys < kbuf.buf_min or phys + memsz - 1 > kbuf.buf_max:
            self.pool.free(phys, memsz)
            raise KernelError(
                errno.ENOMEM,
                f"pool address {phys:#x} for the {kbuf.kind} segment is outside [{kbuf.buf_min:#x}, {kbuf.buf_max:#x}]",
            )
        # spec 3.3 step 5: overlaps a segment already placed for this image.
        if _overlapping(self._placed(), phys, phys + memsz - 1) is not None:
            self.pool.free(phys, memsz)
            raise KernelError(errno.EBUSY, f"pool range {phys:#x}+{memsz:#x} overlaps an earlier segment")
        return phys

    def _placed(self) -> list[tuple[int, int]]:
        return [(segment.mem, segment.memsz) for segment in self.segments]

    # -- the mainline System RAM walk ----------------------------------------------------------

    def _walk_system_ram(
        self,
        memsz: int,
        align: int,
        buf_min: int,
        buf_max: int,
        top_down: bool,
    ) -> int | None:
        """kexec_walk_resources + locate_mem_hole_callback: the first hole in walk order."""
        ranges = sorted(self.env.system_ram)
        taken = self._placed()
        for base, size in reversed(ranges) if top_down else ranges:
            start, end = base, base + size - 1
            if size < memsz or end < buf_min or start > buf_max:
                continue
            found = (
                _hole_top_down(start, end, memsz, align, buf_min, buf_max, taken)
                if top_down
                else _hole_bottom_up(start, end, memsz, align, buf_min, buf_max, taken)
            )
            if found is not None:
                return found
        return None

    # -- control pages (spec 2.7.1 step 11, 3.4) -----------------------------------------------

    def alloc_control_pages(self) -> None:
        """The control-code page, then the swap page (non-crash images)."""
        for kind, what in zip(CONTROL_PAGE_KINDS, ("control_code_buffer", "swap buffer"), strict=True):
            self.control_pages.append(self._alloc_control_page(kind, what))

    def _alloc_control_page(self, kind: str, what: str) -> tuple[int, int, bool]:
        size = KEXEC_CONTROL_PAGE_SIZE  # order get_order(KEXEC_CONTROL_PAGE_SIZE) = 0
        failure = KernelError(errno.ENOMEM, f"Could not allocate {what}")
        if self.multikernel and self.env.profile == "rfc-v2":
            # spec 3.4: the seed takes control pages from the instance pool, page aligned.
            addr = None if kind in self.kernel_pages.failing else self.pool.alloc_aligned(size, PAGE_SIZE)
            if addr is None:
                raise failure
            if not is_aligned(addr, PAGE_SIZE) or _overlapping(self._placed(), addr, addr + size - 1):
                self.pool.free(addr, size)
                raise failure
            return addr, size, True
        # spec 2.7.1 step 11 (tree note): buddy pages that are no segment's destination and, since
        # the buddy allocator never hands out pool memory, in no pool chunk (spec 3.1).
        try:
            addr = self.kernel_pages.alloc(kind, size, avoid=self._placed())
        except KernelError:
            raise failure from None
        return addr, size, False

    # -- bookkeeping ---------------------------------------------------------------------------

    def rollback(self, count: int) -> None:
        """`image->nr_segments = count`: the segments go, their pool memory stays with the image."""
        while len(self.segments) > count:
            segment = self.segments.pop()
            if segment.pool_alloc is not None:
                self.held.append(segment.pool_alloc)

    def pool_allocations(self) -> list[tuple[int, int]]:
        """Every (addr, size) this image holds in the instance pool."""
        taken = [segment.pool_alloc for segment in self.segments if segment.pool_alloc is not None]
        return taken + self.held + [(addr, size) for addr, size, in_pool in self.control_pages if in_pool]

    def release(self) -> None:
        """Give every pool allocation back (the failure path and kimage_free)."""
        for addr, size in self.pool_allocations():
            self.pool.free(addr, size)
        self.segments.clear()
        self.held.clear()
        self.control_pages.clear()


def _hole_top_down(
    start: int, end: int, memsz: int, align: int, buf_min: int, buf_max: int, taken: list[tuple[int, int]]
) -> int | None:
    """locate_mem_hole_top_down. On a collision the kernel steps one page down and re-aligns; every
    candidate that still overlaps the same segment fails too, so jump straight below it."""
    temp_start = min(end, buf_max) - memsz + 1
    while True:
        temp_start = align_down(temp_start, align)
        if temp_start < start or temp_start < buf_min:
            return None
        hit = _overlapping(taken, temp_start, temp_start + memsz - 1)
        if hit is None:
            return temp_start
        temp_start = min(temp_start - PAGE_SIZE, hit[0] - memsz)


def _hole_bottom_up(
    start: int, end: int, memsz: int, align: int, buf_min: int, buf_max: int, taken: list[tuple[int, int]]
) -> int | None:
    """locate_mem_hole_bottom_up, with the same jump past a colliding segment."""
    temp_start = max(start, buf_min)
    while True:
        temp_start = round_up(temp_start, align)
        temp_end = temp_start + memsz - 1
        if temp_end > end or temp_end > buf_max:
            return None
        hit = _overlapping(taken, temp_start, temp_end)
        if hit is None:
            return temp_start
        temp_start = max(temp_start + PAGE_SIZE, hit[0] + hit[1])

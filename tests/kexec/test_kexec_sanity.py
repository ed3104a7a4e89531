"""sanity_check_segment_list's four loops, in order (spec 2.7.1 step 10)."""

from __future__ import annotations

import errno

import pytest

from mkd.errors import KernelError
from mkd.kexec.kexec_file import KexecEnv
from mkd.kexec.sanity import destination_memory_limit, sanity_check_segment_list
from mkd.kexec.segments import PlannedSegment, SegmentSource

X86 = KexecEnv(profile="tree", arch="x86_64", total_ram_bytes=1 << 30)


def seg(mem: int, memsz: int, bufsz: int = 0, kind: str = "s") -> PlannedSegment:
    return PlannedSegment(
        kind=kind,
        source=SegmentSource(length=bufsz),
        bufsz=bufsz,
        mem=mem,
        memsz=memsz,
        buf_align=4096,
        buf_min=0,
        buf_max=(1 << 64) - 1,
        top_down=True,
        in_pool=True,
    )


def errno_of(env: KexecEnv, *segments: PlannedSegment) -> int:
    try:
        sanity_check_segment_list(env, list(segments))
    except KernelError as exc:
        return exc.errno_code
    return 0


def test_valid_list_passes() -> None:
    assert errno_of(X86, seg(0x100000, 0x2000, 0x1800), seg(0x200000, 0x1000, 0x1000)) == 0


@pytest.mark.parametrize(
    "segment",
    [seg(0x100800, 0x1000), seg(0x100000, 0x1800), seg((1 << 64) - 0x1000, 0x2000)],
    ids=["start-unaligned", "end-unaligned", "wraps"],
)
def test_loop_1_alignment_and_wrap(segment: PlannedSegment) -> None:
    assert errno_of(X86, segment) == errno.EADDRNOTAVAIL


def test_loop_1_destination_limit_per_arch() -> None:
    near_top = seg((1 << 46) - 0x2000, 0x1000)
    at_limit = seg((1 << 46) - 0x1000, 0x1000)  # mend = 2^46 >= MAXMEM-1
    assert errno_of(X86, near_top) == 0
    assert errno_of(X86, at_limit) == errno.EADDRNOTAVAIL
    five_level = KexecEnv(profile="tree", arch="x86_64", five_level_paging=True, total_ram_bytes=1 << 30)
    assert destination_memory_limit(five_level) == (1 << 52) - 1
    assert errno_of(five_level, at_limit) == 0
    arm64 = KexecEnv(profile="tree", arch="arm64", total_ram_bytes=1 << 30)
    assert errno_of(arm64, seg(1 << 60, 0x1000)) == 0


def test_loop_2_overlap() -> None:
    assert errno_of(X86, seg(0x100000, 0x2000), seg(0x101000, 0x1000)) == errno.EINVAL
    assert errno_of(X86, seg(0x100000, 0x1000), seg(0x101000, 0x1000)) == 0  # touching is fine


def test_loop_3_bufsz_above_memsz() -> None:
    assert errno_of(X86, seg(0x100000, 0x1000, 0x1001)) == errno.EINVAL


def test_loop_4_half_of_ram() -> None:
    half = (1 << 30) // 2
    assert errno_of(X86, seg(0x100000, half)) == 0
    assert errno_of(X86, seg(0x100000, half + 0x1000)) == errno.EINVAL
    assert errno_of(X86, seg(0x100000, half // 2), seg(0x40000000, half // 2 + 0x1000)) == errno.EINVAL


def test_loops_run_in_order() -> None:
    # Overlapping AND unaligned: loop 1 wins. Overlapping AND bufsz > memsz: loop 2 wins.
    assert errno_of(X86, seg(0x100000, 0x2000), seg(0x100800, 0x1000)) == errno.EADDRNOTAVAIL
    assert errno_of(X86, seg(0x100000, 0x2000, 0x3000), seg(0x101000, 0x1000)) == errno.EINVAL
    # bufsz > memsz (loop 3) before half of RAM (loop 4): both EINVAL, but the detail tells them apart.
    with pytest.raises(KernelError, match="bufsz"):
        sanity_check_segment_list(X86, [seg(0x100000, 1 << 30, (1 << 30) + 1)])

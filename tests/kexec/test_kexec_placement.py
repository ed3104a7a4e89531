"""kexec_add_buffer and placement (spec 2.7.1, 3.3, 3.4): vectors 17-20, L29, control pages."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import POOL_BASE, expect_errno, make_request, tree_x86

from mkd.errors import KernelError
from mkd.kexec.kexec_file import KexecEnv, prepare_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.placement import KEXEC_SEGMENT_MAX, ULONG_MAX, KimageSegments
from mkd.kexec.segments import KexecBuf, SegmentSource
from mkd.testing import imagegen

MIB = 1 << 20
RAM = ((0x100000, 0x3FF00000), (0x4000_0000, 0xC000_0000))  # [1 MiB, 1 GiB) and [1 GiB, 4 GiB)


def v2_x86(**overrides: object) -> KexecEnv:
    settings: dict[str, object] = {"system_ram": RAM, **overrides}
    return KexecEnv(profile="rfc-v2", arch="x86_64", **settings)  # type: ignore[arg-type]


def kbuf(
    memsz: int = 0x1000,
    *,
    align: int = 0x1000,
    buf_min: int = 0,
    buf_max: int = ULONG_MAX,
    top_down: bool = True,
    mem: int = 0,
    kind: str = "test",
) -> KexecBuf:
    return KexecBuf(
        kind=kind,
        source=SegmentSource(length=memsz),
        bufsz=memsz,
        memsz=memsz,
        buf_align=align,
        buf_min=buf_min,
        buf_max=buf_max,
        top_down=top_down,
        mem=mem,
    )


def big_vmlinux(tmp_path: Path) -> Path:
    return imagegen.write_file(tmp_path / "vmlinux", imagegen.vmlinux(pt_loads=((0x1000000, 16 * MIB, 0x1000),)))


# -- spec section 7 vectors 17-20 --------------------------------------------------------------------


def test_vector_17_v2_falls_back_to_system_ram(tmp_path: Path) -> None:
    pool = GenPool([(POOL_BASE, 4 * MIB)])
    image = prepare_kimage(v2_x86(), make_request(big_vmlinux(tmp_path)), pool)
    kernel = next(segment for segment in image.segments if segment.kind == "kernel")
    assert not kernel.in_pool and kernel.pool_alloc is None
    assert kernel.mem == 0x200000  # bottom-up from buf_min 1 MiB, 2 MiB aligned
    assert image.to_kimage(kernel_sha256="k", initrd_sha256=None).segments[2].in_pool is False
    assert all(segment.in_pool for segment in image.segments if segment.kind != "kernel")


def test_vector_18_tree_has_no_fallback(tmp_path: Path) -> None:
    pool = GenPool([(POOL_BASE, 4 * MIB)])
    env = tree_x86(system_ram=RAM)
    expect_errno(errno.ENOMEM, env, make_request(big_vmlinux(tmp_path)), pool)


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_vector_19_below_buf_min(profile: str) -> None:
    pool = GenPool([(0x800000, 64 * MIB)])
    env = KexecEnv(profile=profile, arch="x86_64", system_ram=RAM)  # type: ignore[arg-type]
    segments = KimageSegments(env, pool, multikernel=True)
    request = kbuf(0x2000, align=0x200000, buf_min=0x1000000)
    if profile == "tree":
        with pytest.raises(KernelError) as caught:
            segments.add_buffer(request)
        assert caught.value.errno_code == errno.ENOMEM
        assert pool.avail() == 64 * MIB
    else:
        segment = segments.add_buffer(request)
        assert not segment.in_pool and segment.mem >= 0x1000000
        assert pool.avail() == 64 * MIB


def test_vector_19_above_buf_max() -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(tree_x86(), pool, multikernel=True)
    with pytest.raises(KernelError) as caught:
        segments.add_buffer(kbuf(0x2000, buf_max=POOL_BASE + 0x1000))
    assert caught.value.errno_code == errno.ENOMEM and pool.avail() == 64 * MIB


@pytest.mark.parametrize("profile", ["tree", "rfc-v2"])
def test_vector_20_overlap_with_an_earlier_segment(profile: str) -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    env = KexecEnv(profile=profile, arch="x86_64", system_ram=RAM)  # type: ignore[arg-type]
    segments = KimageSegments(env, pool, multikernel=True)
    preset = segments.add_buffer(kbuf(0x4000, mem=POOL_BASE))  # a loader-preset address keeps its place
    assert preset.mem == POOL_BASE and not preset.in_pool
    if profile == "tree":
        with pytest.raises(KernelError) as caught:
            segments.add_buffer(kbuf(0x2000))
        assert caught.value.errno_code == errno.EBUSY
    else:
        fallback = segments.add_buffer(kbuf(0x2000))
        assert not fallback.in_pool
    assert pool.avail() == 64 * MIB


def test_unaligned_pool_address_is_enomem_and_freed() -> None:
    class IgnoresAlignment(GenPool):
        def alloc_aligned(self, size: int, align: int) -> int | None:
            return self.alloc(size)

    pool = IgnoresAlignment([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(tree_x86(), pool, multikernel=True)
    segments.add_buffer(kbuf(0x1000))
    with pytest.raises(KernelError) as caught:
        segments.add_buffer(kbuf(0x1000, align=0x200000))
    assert caught.value.errno_code == errno.ENOMEM and "aligned" in caught.value.detail
    assert pool.avail() == 64 * MIB - 0x1000


def test_pool_placement_ignores_top_down() -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(tree_x86(), pool, multikernel=True)
    assert segments.add_buffer(kbuf(0x1000, top_down=True)).mem == POOL_BASE


# -- kexec_add_buffer rules ----------------------------------------------------------------------------


def test_memsz_rounds_up_and_align_is_at_least_a_page() -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(tree_x86(), pool, multikernel=True)
    segment = segments.add_buffer(kbuf(5000, align=16))
    assert (segment.memsz, segment.bufsz, segment.buf_align) == (0x2000, 5000, 0x1000)


def test_l29_seventeenth_segment_is_einval() -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(tree_x86(), pool, multikernel=True)
    for _ in range(KEXEC_SEGMENT_MAX):
        segments.add_buffer(kbuf())
    with pytest.raises(KernelError) as caught:
        segments.add_buffer(kbuf())
    assert caught.value.errno_code == errno.EINVAL
    segments.release()
    assert pool.avail() == 64 * MIB


def test_no_segments_after_the_control_pages() -> None:
    pool = GenPool([(POOL_BASE, 64 * MIB)])
    segments = KimageSegments(v2_x86(), pool, multikernel=True)
    segments.add_buffer(kbuf())
    segments.alloc_control_pages()
    with pytest.raises(KernelError) as caught:
        segments.add_buffer(kbuf())
    assert caught.value.errno_code == errno.EINVAL


# -- the mainline System RAM walk ------------------------------------------------------------------------


def test_walk_top_down_takes_the_highest_hole_and_steps_past_collisions() -> None:
    segments = KimageSegments(v2_x86(), GenPool(), multikernel=False)
    first = segments.add_buffer(kbuf(0x3000))
    assert first.mem == 0x1_0000_0000 - 0x3000
    second = segments.add_buffer(kbuf(0x2000))
    assert second.mem == first.mem - 0x2000  # moved below the first segment
    aligned = segments.add_buffer(kbuf(0x1000, align=0x200000))
    assert aligned.mem == 0x1_0000_0000 - 0x200000


def test_walk_bottom_up_respects_buf_min_and_collisions() -> None:
    segments = KimageSegments(v2_x86(), GenPool(), multikernel=False)
    low = segments.add_buffer(kbuf(0x1000, top_down=False, buf_min=0x3000))
    assert low.mem == 0x100000  # the first RAM range starts at 1 MiB
    nxt = segments.add_buffer(kbuf(0x1000, top_down=False, buf_min=0x3000))
    assert nxt.mem == 0x101000


def test_walk_skips_ranges_that_are_too_small_or_outside_the_window() -> None:
    env = v2_x86(system_ram=((0x100000, 0x1000), (0x200000, 0x100000)))
    segments = KimageSegments(env, GenPool(), multikernel=False)
    assert segments.add_buffer(kbuf(0x2000, top_down=False)).mem == 0x200000
    with pytest.raises(KernelError) as caught:
        segments.add_buffer(kbuf(0x200000))
    assert caught.value.errno_code == errno.EADDRNOTAVAIL
    with pytest.raises(KernelError):
        segments.add_buffer(kbuf(0x1000, buf_min=0x400000))


# -- control pages (spec 3.4, 2.7.1 step 11) ---------------------------------------------------------------


def test_v2_control_pages_come_from_the_pool(vmlinux_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(v2_x86(), make_request(vmlinux_path), pool)
    assert len(image.control_pages) == 2
    assert all(in_pool and size == 4096 for _, size, in_pool in image.control_pages)
    taken = image.pool_allocations()
    assert all((addr, size) in taken for addr, size, _ in image.control_pages)
    assert pool.avail() == (1 << 30) - sum(size for _, size in taken)


def test_tree_control_pages_are_kernel_pages(vmlinux_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(system_ram=RAM), make_request(vmlinux_path), pool)
    assert [in_pool for _, _, in_pool in image.control_pages] == [False, False]
    (control, _, _), (swap, _, _) = image.control_pages
    assert control != swap
    assert all(not (seg.mem <= control < seg.mem + seg.memsz) for seg in image.segments)
    kimage = image.to_kimage(kernel_sha256="k", initrd_sha256=None)
    assert [segment.kind for segment in kimage.segments][-2:] == ["control", "swap"]


def _exact_pool(control_room: int) -> GenPool:
    """A v2 pool that fits the vmlinux segments exactly, plus `control_room` bytes (searched first)."""
    pool = GenPool([(POOL_BASE, 0x1A00000)])  # the kernel's chunk
    pool.add_chunk(POOL_BASE + 0x4000000, 0x1000 + 0x2000 + control_room)  # ima + boot_params + extra
    return pool


@pytest.mark.parametrize(("room", "what"), [(0, "control_code_buffer"), (0x1000, "swap buffer")])
def test_v2_control_page_failures_are_enomem_and_leak_nothing(vmlinux_path: Path, room: int, what: str) -> None:
    pool = _exact_pool(room)
    error = expect_errno(errno.ENOMEM, v2_x86(), make_request(vmlinux_path), pool)
    assert error.detail == f"Could not allocate {what}"


def test_v2_exact_pool_with_room_for_both_pages_loads(vmlinux_path: Path) -> None:
    pool = _exact_pool(0x2000)
    image = prepare_kimage(v2_x86(), make_request(vmlinux_path), pool)
    assert pool.avail() == 0 and all(segment.in_pool for segment in image.segments)

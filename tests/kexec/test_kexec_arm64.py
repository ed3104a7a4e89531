"""The arm64 Image loader and its DTB (spec 2.7.4): L24-L28."""

from __future__ import annotations

import errno
from pathlib import Path

import libfdt
import pytest
from conftest import POOL_BASE, expect_errno, make_request

from mkd.kexec.arm64_image import MK_BOOT_DTB_SIZE
from mkd.kexec.kexec_file import KexecEnv, prepare_kimage, release_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.placement import ULONG_MAX
from mkd.testing import imagegen

CMDLINE_20 = b"console=ttyAMA0 abc\0"


def arm64(profile: str = "tree", **overrides: object) -> KexecEnv:
    return KexecEnv(profile=profile, arch="arm64", **overrides)  # type: ignore[arg-type]


def image_file(tmp_path: Path, file_len: int = 0x1C00000, **fields: object) -> Path:
    head = imagegen.arm64_image(file_len=4096, **fields)  # type: ignore[arg-type]
    return imagegen.write_sized(tmp_path / "Image", head, file_len)


@pytest.fixture
def initrd_1m(tmp_path: Path) -> Path:
    return imagegen.write_file(tmp_path / "initrd.gz", imagegen.initrd("gzip", 0x100000))


def test_l24_short_file_or_bad_magic_is_einval(tmp_path: Path, pool: GenPool) -> None:
    short = imagegen.write_file(tmp_path / "short", imagegen.arm64_image(file_len=63))
    expect_errno(errno.EINVAL, arm64(), make_request(short), pool)
    expect_errno(errno.EINVAL, arm64(), make_request(image_file(tmp_path, magic=b"ARM\x00")), pool)


def test_l24_x86_images_are_einval_on_arm64(bz_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EINVAL, arm64(), make_request(bz_path), pool)


def test_l25_image_size_zero(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EINVAL, arm64(), make_request(image_file(tmp_path, image_size=0)), pool)


def test_endianness_and_page_size_checks(tmp_path: Path, pool: GenPool) -> None:
    big_endian = image_file(tmp_path, flags=0b0011)
    expect_errno(errno.EINVAL, arm64(arm64_mixed_endian=False), make_request(big_endian), pool)
    assert prepare_kimage(arm64(), make_request(big_endian), pool).loader == "arm64-image"
    sixteen_k = image_file(tmp_path, flags=0b0100)
    expect_errno(errno.EINVAL, arm64(arm64_page_sizes=(4096, 65536)), make_request(sixteen_k), pool)
    unspecified = image_file(tmp_path, flags=0)
    assert prepare_kimage(arm64(arm64_page_sizes=(65536,)), make_request(unspecified), pool).segments


def test_l26_segments(tmp_path: Path, initrd_1m: Path, pool: GenPool) -> None:
    image = prepare_kimage(arm64(), make_request(image_file(tmp_path), initrd=initrd_1m, cmdline=CMDLINE_20), pool)
    assert image.loader == "arm64-image"
    assert [segment.kind for segment in image.segments] == ["kernel", "initrd", "dtb"]
    kernel, initrd, dtb = image.segments
    k = kernel.mem
    assert (kernel.bufsz, kernel.memsz, kernel.buf_align, kernel.top_down, kernel.buf_min) == (
        0x1C00000,
        0x1E30000,
        0x200000,
        False,
        0,
    )
    assert (initrd.memsz, initrd.buf_min, initrd.buf_max, initrd.top_down) == (
        0x100000,
        k + 0x1E30000,
        (k & ~((1 << 30) - 1)) + (32 << 30),
        False,
    )
    assert (dtb.memsz, dtb.buf_align, dtb.buf_min, dtb.buf_max, dtb.top_down) == (
        max(dtb.bufsz, MK_BOOT_DTB_SIZE),
        0x200000,
        k + 0x1E30000,
        ULONG_MAX,
        True,
    )
    assert dtb.memsz == MK_BOOT_DTB_SIZE and dtb.bufsz < MK_BOOT_DTB_SIZE
    assert image.start == k
    assert image.mk_kernel_entry is None and image.spawnable
    assert all(segment.in_pool for segment in image.segments)


def test_l26_dtb_contents(tmp_path: Path, initrd_1m: Path, pool: GenPool) -> None:
    image = prepare_kimage(arm64(), make_request(image_file(tmp_path), initrd=initrd_1m, cmdline=CMDLINE_20), pool)
    initrd, dtb = image.segments[1], image.segments[2]
    blob = b"".join(dtb.source.iter_bytes())
    fdt = libfdt.Fdt(blob)
    assert fdt.totalsize() == len(blob) == dtb.bufsz  # packed
    chosen = fdt.path_offset("/chosen")
    assert fdt.getprop(chosen, "bootargs").as_str() == "console=ttyAMA0 abc"
    assert fdt.getprop(chosen, "linux,initrd-start").as_uint64() == initrd.mem
    assert fdt.getprop(chosen, "linux,initrd-end").as_uint64() == initrd.mem + 0x100000
    assert len(fdt.getprop(chosen, "kaslr-seed")) == 8
    assert len(fdt.getprop(chosen, "rng-seed")) == 128
    assert len(fdt.getprop(chosen, "linux,booted-from-kexec")) == 0
    assert fdt.num_mem_rsv() == 1 and list(fdt.get_mem_rsv(0)) == [initrd.mem, 0x100000]


def test_dtb_without_command_line_or_initrd(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(arm64(), make_request(image_file(tmp_path), cmdline=None), pool)
    fdt = libfdt.Fdt(b"".join(image.segments[1].source.iter_bytes()))
    chosen = fdt.path_offset("/chosen")
    assert not fdt.hasprop(chosen, "bootargs")
    assert not fdt.hasprop(chosen, "linux,initrd-start")
    assert fdt.num_mem_rsv() == 0


def test_v2_dtb_is_packed_size_and_carries_the_ima_buffer(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(arm64("rfc-v2"), make_request(image_file(tmp_path)), pool)
    assert [segment.kind for segment in image.segments] == ["ima", "kernel", "dtb"]
    ima, dtb = image.segments[0], image.segments[2]
    assert dtb.memsz == (dtb.bufsz + 4095) // 4096 * 4096
    fdt = libfdt.Fdt(b"".join(dtb.source.iter_bytes()))
    buffer = bytes(fdt.getprop(fdt.path_offset("/chosen"), "linux,ima-kexec-buffer"))
    assert buffer == ima.mem.to_bytes(8, "big") + ima.memsz.to_bytes(8, "big")


def test_text_offset_moves_the_segment_but_not_the_pool_allocation(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(arm64(), make_request(image_file(tmp_path, text_offset=0x80000)), pool)
    kernel = image.segments[0]
    assert kernel.pool_alloc == (kernel.mem - 0x80000, 0x1E30000 + 0x80000)
    assert kernel.memsz == 0x1E30000 and image.start == kernel.mem


def test_l27_file_longer_than_image_size(tmp_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.EINVAL, arm64(), make_request(image_file(tmp_path, file_len=0x2000000)), pool)
    assert "bufsz" in error.detail


def test_l28_first_fit_puts_the_initrd_below_the_kernel(tmp_path: Path, initrd_1m: Path) -> None:
    # The pool starts 1 MiB below a 2 MiB boundary: the kernel goes to the boundary and the
    # initrd's first fit is the 1 MiB gap under it, below buf_min. Every retry of image_load puts
    # the kernel higher, the initrd's first fit is the same gap each time, so all attempts fail and
    # the load ends with the kernel's own ENOMEM once the pool has no room left for it (2.7.4).
    pool = GenPool([(POOL_BASE + 0x100000, 0x8000000)])
    error = expect_errno(errno.ENOMEM, arm64(), make_request(image_file(tmp_path), initrd=initrd_1m), pool)
    assert "kernel segment" in error.detail


def test_image_load_retries_the_kernel_above_the_previous_attempt(tmp_path: Path, initrd_1m: Path) -> None:
    """spec 2.7.4 (mainline image_load): first attempt fails, the second succeeds.

    Chunk A (searched first) holds exactly the kernel at 4 GiB; the initrd's only room is chunk B
    at 64 GiB, outside the 32 GiB window above the kernel: ENOMEM. The retry asks for the kernel
    above the first one: it goes to B, and the initrd and DTB follow it there.
    """
    kernel_bytes = 0x1E30000
    chunk_a, chunk_b = (POOL_BASE, kernel_bytes), (64 << 30, 1 << 30)
    pool = GenPool([chunk_b, chunk_a])  # newest first: A is tried first
    image = prepare_kimage(arm64(), make_request(image_file(tmp_path), initrd=initrd_1m, cmdline=CMDLINE_20), pool)
    kernel, initrd, dtb = image.segments
    assert (kernel.kind, initrd.kind, dtb.kind) == ("kernel", "initrd", "dtb")
    assert kernel.mem == chunk_b[0] and initrd.mem >= kernel.mem + kernel_bytes and dtb.mem >= initrd.mem
    # The first kernel's pool memory stays with the image (what made the retry find B) until it is freed.
    assert image.held == [chunk_a]
    release_kimage(image, pool)
    assert pool.avail() == chunk_a[1] + chunk_b[1]


def test_image_load_retry_also_walks_system_ram(tmp_path: Path, initrd_1m: Path) -> None:
    """rfc-v2 without pool room: the System RAM walk gets the raised buf_min on each retry (2.7.4)."""
    # RAM: a low range with room for the kernel only, then a high range; the initrd window from a
    # low kernel does not reach the high range, so the first attempt fails and the second succeeds.
    env = arm64("rfc-v2", ima_kexec=False, system_ram=((0x40000000, 0x1E30000), (80 << 30, 1 << 30)))
    control_pages_only = GenPool([(POOL_BASE, 0x2000)])  # the seed's control pages are pool pages (3.4)
    image = prepare_kimage(env, make_request(image_file(tmp_path), initrd=initrd_1m), control_pages_only)
    kernel = image.segments[0]
    assert kernel.mem == 80 << 30 and not kernel.in_pool and image.held == []


def test_l28_v2_falls_back_to_system_ram(tmp_path: Path, initrd_1m: Path) -> None:
    pool = GenPool([(POOL_BASE + 0x100000, 0x8000000)])
    # Without IMA: its 4 KiB segment would otherwise take the start of the gap first.
    env = arm64("rfc-v2", ima_kexec=False, system_ram=((0x40000000, 1 << 32),))
    image = prepare_kimage(env, make_request(image_file(tmp_path), initrd=initrd_1m), pool)
    kernel, initrd = image.segments[0], image.segments[1]
    assert kernel.in_pool and not initrd.in_pool
    assert initrd.mem == kernel.mem + 0x1E30000  # bottom-up walk from buf_min = kernel end

"""bzImage64 (spec 2.7.2, 2.7.5): L5-L12, L15-L17, the policy switch and B's terms."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import pytest
from conftest import CMDLINE_100, POOL_BASE, expect_errno, make_request, tree_x86

from mkd.kexec.flags import load_flags
from mkd.kexec.kexec_file import KexecEnv, prepare_kimage, release_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.placement import ULONG_MAX
from mkd.testing import imagegen


def bz_file(tmp_path: Path, total: int = 10_485_760, **fields: int) -> Path:
    head = imagegen.bzimage(total_len=4096, **fields)  # type: ignore[arg-type]
    return imagegen.write_sized(tmp_path / "bzImage", head, total)


def test_l5_short_random_file_is_enoexec_from_the_last_loader(tmp_path: Path, pool: GenPool) -> None:
    data = b"\0" + os.urandom(1022)
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(imagegen.write_file(tmp_path / "k", data)), pool)
    assert error.detail == "File is too short to be a bzImage"


def test_l6_no_hdrs_is_not_a_bzimage(tmp_path: Path, pool: GenPool) -> None:
    path = imagegen.write_file(tmp_path / "k", bytes(4096))
    assert expect_errno(errno.ENOEXEC, tree_x86(), make_request(path), pool).detail == "Not a bzImage"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"boot_flag": 0}, "No x86 boot sector present"),
        ({"version": 0x020B}, "Must be at least protocol version 2.12"),
        ({"loadflags": 0}, "zImage not a bzImage"),
        ({"xloadflags": 0x1}, "XLF_CAN_BE_LOADED_ABOVE_4G is not set."),
        ({"xloadflags": 0x2}, "Not a bzImage64. XLF_KERNEL_64 is not set."),
        # Several bad fields: the earliest probe step wins.
        ({"boot_flag": 0, "version": 0x0200, "loadflags": 0}, "No x86 boot sector present"),
    ],
)
def test_l7_probe_refusals_in_order(tmp_path: Path, pool: GenPool, fields: dict[str, int], message: str) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(bz_file(tmp_path, **fields)), pool)
    assert error.detail == message


def test_l8_five_level_paging_needs_xlf_5level(tmp_path: Path, pool: GenPool) -> None:
    env = tree_x86(five_level_paging=True)
    error = expect_errno(errno.ENOEXEC, env, make_request(bz_file(tmp_path, xloadflags=0x03)), pool)
    assert error.detail == "bzImage cannot handle 5-level paging mode."
    image = prepare_kimage(env, make_request(bz_file(tmp_path, xloadflags=0x23)), pool)
    assert image.loader == "bzImage64"


def test_l9_truncated_after_a_passing_probe(tmp_path: Path, pool: GenPool) -> None:
    path = bz_file(tmp_path, total=16000, setup_sects=31)
    assert expect_errno(errno.ENOEXEC, tree_x86(), make_request(path), pool).detail == "bzImage truncated"


@pytest.mark.parametrize(("cmdline_len", "code"), [(2017, 0), (2018, errno.EINVAL), (2048, errno.EINVAL)])
def test_l10_command_line_limits(bz_path: Path, pool: GenPool, cmdline_len: int, code: int) -> None:
    request = make_request(bz_path, cmdline=b"x" * (cmdline_len - 1) + b"\0")
    if code:
        error = expect_errno(code, tree_x86(), request, pool)
        assert "too long" in error.detail
    else:
        image = prepare_kimage(tree_x86(), request, pool)
        assert image.cmdline == request.cmdline


def test_l11_missing_nul_is_einval_after_the_initrd_read(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    env = tree_x86()
    with_initrd = load_flags(1, has_initrd=True)
    expect_errno(errno.EINVAL, env, make_request(bz_path, initrd=initrd_5m, cmdline=b"abc", flags=with_initrd), pool)
    # The initrd is read first, so a missing initrd wins over the bad command line.
    expect_errno(errno.EBADF, env, make_request(bz_path, cmdline=b"abc", flags=with_initrd), pool)


def test_l12_empty_command_line(bz_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_path, cmdline=None), pool)
    assert image.cmdline == b""
    params = image.segments[1]
    assert params.bufsz == 4096 + 0 + 30 + 2 + 112 + 48 + 32 + 48 + 32  # ALIGN16(4126)=4128 then the tail
    data = b"".join(params.source.iter_bytes())
    cmd_line_ptr = struct.unpack_from("<I", data, 0x228)[0] | struct.unpack_from("<I", data, 0x0C8)[0] << 32
    assert cmd_line_ptr == params.mem + 0x1000
    assert data[0x1000] == 0


def test_l15_segments(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    env = tree_x86()
    image = prepare_kimage(env, make_request(bz_path, initrd=initrd_5m), pool)
    assert image.loader == "bzImage64"
    assert [segment.kind for segment in image.segments] == ["purgatory", "boot_params", "kernel", "initrd"]
    purgatory, params, kernel, initrd = image.segments
    assert purgatory.mem >= 0x3000 and purgatory.top_down and purgatory.memsz == env.purgatory_bytes
    assert (params.bufsz, params.memsz, params.buf_min) == (4512, 0x2000, 0x3000)
    assert (kernel.bufsz, kernel.memsz, kernel.buf_align, kernel.buf_min) == (
        0x9FC800,
        0x2A1E000,
        0x200000,
        0x1000000,
    )
    assert (initrd.bufsz, initrd.memsz, initrd.buf_align, initrd.buf_min) == (5_000_000, 0x4C5000, 0x1000, 0x1000000)
    assert all(segment.buf_max == ULONG_MAX and segment.top_down for segment in image.segments)
    assert all(segment.in_pool for segment in image.segments)
    assert kernel.mem % 0x200000 == 0
    assert image.mk_boot_params == params.mem
    assert image.mk_kernel_entry is None
    assert image.start == purgatory.mem
    # The kernel segment is the file from kern16 = (27+1)*512 on.
    assert (kernel.source.path, kernel.source.offset, kernel.source.length) == (bz_path, 28 * 512, 0x9FC800)


def test_l15_boot_params_contents(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_path, initrd=initrd_5m), pool)
    params, initrd = image.segments[1], image.segments[3]
    data = b"".join(params.source.iter_bytes())
    assert len(data) == 4512
    assert data[0x202:0x206] == b"HdrS" and data[0x210] == 0xD0 and data[0x211] == 0
    assert data[0x1000 : 0x1000 + 100] == CMDLINE_100
    ramdisk = struct.unpack_from("<I", data, 0x218)[0] | struct.unpack_from("<I", data, 0x0C0)[0] << 32
    assert ramdisk == initrd.mem and struct.unpack_from("<I", data, 0x21C)[0] == 5_000_000
    # mk_e820_fill: a reserved page at 0, then the instance pool as RAM.
    assert data[0x1E8] == 2
    assert struct.unpack_from("<QQI", data, 0x2D0) == (0, 0x1000, 2)
    assert struct.unpack_from("<QQI", data, 0x2D0 + 20) == (POOL_BASE, 1 << 30, 1)
    # The setup_data chain: MULTIKERNEL then RNG pushed on the front (IMA and KHO are not written).
    head = struct.unpack_from("<Q", data, 0x250)[0]
    types = []
    while head:
        next_, setup_type, _length = struct.unpack_from("<QII", data, head - params.mem)
        types.append(setup_type)
        head = next_
    assert types == [9, 11]


def test_l16_init_size_below_payload_fails_the_sanity_check(tmp_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.EINVAL, tree_x86(), make_request(bz_file(tmp_path, init_size=0x800000)), pool)
    assert "bufsz" in error.detail


def test_l17_low_pref_address_raises_buf_min_to_1mib(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_file(tmp_path, pref_address=0)), pool)
    assert image.segments[2].buf_min == 0x100000


def test_kernel_alignment_zero_means_a_page(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_file(tmp_path, kernel_alignment=0)), pool)
    assert image.segments[2].buf_align == 4096


def test_tree_bzimage_loads_but_cannot_spawn(bz_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_path), pool)
    assert not image.spawnable
    assert not image.to_kimage(kernel_sha256="k", initrd_sha256=None).spawnable


def test_reject_policy_refuses_bzimage_under_tree_only(bz_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(bzimage_policy="reject"), make_request(bz_path), pool)
    assert "vmlinux" in error.detail
    v2 = KexecEnv(profile="rfc-v2", arch="x86_64", bzimage_policy="reject")
    image = prepare_kimage(v2, make_request(bz_path), pool)
    assert image.spawnable


def test_v2_has_no_mk_setup_data_and_adds_the_ima_segment(bz_path: Path, pool: GenPool) -> None:
    env = KexecEnv(profile="rfc-v2", arch="x86_64")
    image = prepare_kimage(env, make_request(bz_path), pool)
    assert [segment.kind for segment in image.segments] == ["ima", "purgatory", "boot_params", "kernel"]
    assert image.segments[2].bufsz == 4512 - 32
    assert image.segments[0].memsz == env.ima_buffer_bytes


@pytest.mark.parametrize(
    ("overrides", "instance_id", "delta"),
    [
        ({"efi_map_size": 100}, 1, 112),  # ALIGN16(100)
        ({"host_booted_with_dtb": True, "host_dtb_bytes": 0x800}, 1, 16 + 0x800),  # odd id = FORCE_DTB
        ({"host_booted_with_dtb": True, "host_dtb_bytes": 0x800}, 2, 0),
        ({"ima_kexec": False}, 1, -32),
        ({"kho": False}, 1, -48),
        ({"multikernel": False}, 1, -32),
    ],
)
def test_boot_params_size_terms(
    bz_path: Path, pool: GenPool, overrides: dict[str, object], instance_id: int, delta: int
) -> None:
    image = prepare_kimage(tree_x86(**overrides), make_request(bz_path, instance_id=instance_id), pool)
    assert image.segments[1].bufsz == 4512 + delta


def test_every_failure_returns_the_pool(bz_path: Path, initrd_5m: Path) -> None:
    """A pool big enough for all but the initrd: the failure after three placements frees them all."""
    pool = GenPool([(POOL_BASE, 0x3000000)])
    error = expect_errno(errno.ENOMEM, tree_x86(), make_request(bz_path, initrd=initrd_5m), pool)
    assert "initrd" in error.detail


def test_release_returns_everything(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    before = pool.free_ranges()
    image = prepare_kimage(tree_x86(), make_request(bz_path, initrd=initrd_5m), pool)
    assert pool.avail() == (1 << 30) - sum(size for _, size in image.pool_allocations())
    release_kimage(image, pool)
    assert pool.free_ranges() == before


@pytest.mark.parametrize(
    ("fields", "cmdline_len", "code"),
    [
        ({"setup_sects": 31}, 100, errno.ENOEXEC),  # "bzImage truncated" (file cut below)
        ({}, 2040, errno.EINVAL),  # command line too long
        ({"init_size": 0x800000}, 100, errno.EINVAL),  # sanity check
    ],
)
def test_v2_loader_failures_free_the_ima_segment_too(
    tmp_path: Path, fields: dict[str, int], cmdline_len: int, code: int
) -> None:
    """Under rfc-v2 the IMA segment is in the pool before the loader runs; a loader failure frees it."""
    pool = GenPool([(POOL_BASE, 1 << 30)])
    total = 16000 if fields.get("setup_sects") == 31 else 10_485_760
    env = KexecEnv(profile="rfc-v2", arch="x86_64")
    request = make_request(bz_file(tmp_path, total=total, **fields), cmdline=b"x" * (cmdline_len - 1) + b"\0")
    expect_errno(code, env, request, pool)

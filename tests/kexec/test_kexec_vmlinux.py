"""The ELF vmlinux loader (spec 2.7.3): L18-L23."""

from __future__ import annotations

import errno
import hashlib
import struct
from pathlib import Path

import pytest
from conftest import POOL_BASE, expect_errno, make_request, tree_x86

from mkd.kexec.kexec_file import KexecEnv, prepare_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.testing import imagegen

NOT_FOUND = "multikernel_startup_64 entry offset not found in PT_NOTE"


def elf(tmp_path: Path, **options: object) -> Path:
    return imagegen.write_file(tmp_path / "vmlinux", imagegen.vmlinux(**options))  # type: ignore[arg-type]


def test_l18_elf_without_mk_note(tmp_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(elf(tmp_path, mk_entry=None)), pool)
    assert error.detail == NOT_FOUND


@pytest.mark.parametrize(
    "options",
    [{"ipi_abi_version": 2}, {"mk_entry": 0}, {"note_desc_size": 4}],
    ids=["abi-mismatch", "entry-zero", "short-descriptor"],
)
def test_unusable_mk_notes_count_as_not_found(tmp_path: Path, pool: GenPool, options: dict[str, int]) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(elf(tmp_path, **options)), pool)
    assert error.detail == NOT_FOUND


def test_abi_version_comes_from_the_environment(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(mk_ipi_abi_version=2), make_request(elf(tmp_path, ipi_abi_version=2)), pool)
    assert image.loader == "vmlinux"


def test_legacy_eight_byte_descriptor(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path, note_desc_size=8)), pool)
    assert image.mk_kernel_entry == image.segments[1].mem + 0x40


def test_l19_aarch64_elf_on_x86(tmp_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(elf(tmp_path, machine=183)), pool)
    assert error.detail == "Not a bzImage"  # the last loader's verdict


@pytest.mark.parametrize("options", [{"elf_class": 1}, {"e_type": 1}], ids=["elf32", "relocatable"])
def test_probe_refusals(tmp_path: Path, pool: GenPool, options: dict[str, int]) -> None:
    expect_errno(errno.ENOEXEC, tree_x86(), make_request(elf(tmp_path, **options)), pool)


def test_l20_program_headers_past_the_end(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EINVAL, tree_x86(), make_request(elf(tmp_path, truncate_phdrs=True)), pool)


def test_no_pt_load(tmp_path: Path, pool: GenPool) -> None:
    error = expect_errno(errno.ENOEXEC, tree_x86(), make_request(elf(tmp_path, pt_loads=())), pool)
    assert "PT_LOAD" in error.detail


def test_l21_segments(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path)), pool)
    assert [segment.kind for segment in image.segments] == ["boot_params", "kernel"]
    params, kernel = image.segments
    assert (params.bufsz, params.memsz) == (4992, 0x2000)
    assert (kernel.bufsz, kernel.memsz, kernel.buf_align, kernel.buf_min, kernel.top_down) == (
        0x1A00000,
        0x1A00000,
        0x200000,
        0x100000,
        False,
    )
    assert image.mk_kernel_entry == kernel.mem + 0x40
    assert image.mk_boot_params == image.start == params.mem
    assert image.spawnable
    data = b"".join(params.source.iter_bytes())
    assert data[0x202:0x206] == b"HdrS" and data[0x211] == 0xC1 and data[0x210] == 0xD0


def test_l21_kernel_image_is_laid_out_by_paddr(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path)), pool)
    expected = bytearray(0x1A00000)
    expected[0:0x1000] = (struct.pack("<Q", 0x1000000) * 0x201)[:0x1000]
    expected[0x1800000:0x1801000] = (struct.pack("<Q", 0x2800000) * 0x201)[:0x1000]
    assert image.segments[1].source.sha256() == hashlib.sha256(expected).hexdigest()


def test_load_size_uses_the_running_minimum_in_header_order(tmp_path: Path, pool: GenPool) -> None:
    loads = ((0x2000000, 0x200000, 0x1000), (0x1000000, 0x200000, 0x1000))
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path, pt_loads=loads, mk_entry=0x1000000)), pool)
    # max(0x2000000+0x200000-0x2000000, 0x1000000+0x200000-0x1000000) = 0x200000, not 0x1200000.
    assert image.segments[1].bufsz == 0x200000


def test_l22_small_pool_is_enomem_without_fallback(tmp_path: Path) -> None:
    pool = GenPool([(POOL_BASE, 0x1000000)])
    error = expect_errno(errno.ENOMEM, tree_x86(), make_request(elf(tmp_path)), pool)
    assert "kernel" in error.detail


def test_l23_signature_enforcement(tmp_path: Path, bz_path: Path, pool: GenPool) -> None:
    env = tree_x86(kexec_sig_enforced=True)
    expect_errno(errno.EKEYREJECTED, env, make_request(elf(tmp_path)), pool)
    expect_errno(errno.EKEYREJECTED, env, make_request(bz_path), pool)


def test_signature_check_runs_after_the_probe(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.ENOEXEC, tree_x86(kexec_sig_enforced=True), make_request(elf(tmp_path, machine=3)), pool)


def test_no_command_line_limit(tmp_path: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path), cmdline=b"x" * 9999 + b"\0"), pool)
    assert image.segments[0].bufsz > 4096 + 10000


def test_initrd_segment(tmp_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(elf(tmp_path), initrd=initrd_5m), pool)
    initrd = image.segments[2]
    assert (initrd.kind, initrd.memsz, initrd.buf_min, initrd.top_down) == ("initrd", 0x4C5000, 0x1000000, True)


def test_non_multikernel_load_gets_purgatory(tmp_path: Path) -> None:
    env = KexecEnv(profile="tree", arch="x86_64", system_ram=((0x100000, 1 << 30),))
    image = prepare_kimage(env, make_request(elf(tmp_path), flags=0x4), GenPool())
    # Mainline adds the IMA buffer for every non-multikernel image, before the loader runs.
    assert [segment.kind for segment in image.segments] == ["ima", "purgatory", "boot_params", "kernel"]
    assert image.start == image.segments[1].mem and image.mk_kernel_entry is None
    assert not any(segment.in_pool for segment in image.segments)

"""Spec 2.7.1 steps 1 and 4: L1-L4, L13, L14."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import expect_errno, make_request, tree_x86

from mkd.errors import KernelError
from mkd.kexec.file_read import KEXEC_FILE_SIZE_MAX, read_kexec_file
from mkd.kexec.flags import KEXEC_FILE_NO_INITRAMFS, load_flags
from mkd.kexec.kexec_file import prepare_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.testing import imagegen


def test_l1_no_kernel_fd_is_ebadf(pool: GenPool) -> None:
    expect_errno(errno.EBADF, tree_x86(), make_request(None), pool)


def test_l1_unopenable_kernel_is_ebadf(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EBADF, tree_x86(), make_request(tmp_path / "missing"), pool)


def test_l1_unreadable_kernel_is_ebadf(tmp_path: Path, pool: GenPool, monkeypatch: pytest.MonkeyPatch) -> None:
    path = imagegen.write_file(tmp_path / "k", b"x" * 2048)
    path.chmod(0o200)
    if os.geteuid() == 0:  # root reads any file: stand in for the permission check a user would meet
        import mkd.kexec.file_read as file_read

        monkeypatch.setattr(file_read.os, "access", lambda p, mode: Path(p) != path)
    expect_errno(errno.EBADF, tree_x86(), make_request(path), pool)


def test_l2_empty_kernel_is_einval(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EINVAL, tree_x86(), make_request(imagegen.write_file(tmp_path / "k", b"")), pool)


def test_l3_directory_is_einval(tmp_path: Path, pool: GenPool) -> None:
    expect_errno(errno.EINVAL, tree_x86(), make_request(tmp_path), pool)


def test_l3_fifo_is_einval_without_blocking(tmp_path: Path, pool: GenPool) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    expect_errno(errno.EINVAL, tree_x86(), make_request(fifo), pool)


def test_l4_kernel_over_4gib_is_efbig(tmp_path: Path, pool: GenPool) -> None:
    path = imagegen.write_sized(tmp_path / "huge", imagegen.bzimage(total_len=4096), KEXEC_FILE_SIZE_MAX + 1)
    expect_errno(errno.EFBIG, tree_x86(), make_request(path), pool)


def test_exactly_4gib_passes_the_size_rule(tmp_path: Path) -> None:
    path = imagegen.write_sized(tmp_path / "edge", b"x", KEXEC_FILE_SIZE_MAX)
    assert read_kexec_file(path, "kernel").size == KEXEC_FILE_SIZE_MAX


def test_initrd_follows_the_same_rules(tmp_path: Path, bz_path: Path, pool: GenPool) -> None:
    env = tree_x86()
    flags = load_flags(1, has_initrd=True)
    empty = imagegen.write_file(tmp_path / "empty", b"")
    huge = imagegen.write_sized(tmp_path / "huge", b"070701", KEXEC_FILE_SIZE_MAX + 1)
    expect_errno(errno.EBADF, env, make_request(bz_path, flags=flags), pool)  # L13
    expect_errno(errno.EINVAL, env, make_request(bz_path, initrd=empty, flags=flags), pool)
    expect_errno(errno.EINVAL, env, make_request(bz_path, initrd=tmp_path, flags=flags), pool)
    expect_errno(errno.EFBIG, env, make_request(bz_path, initrd=huge, flags=flags), pool)


def test_l13_probe_runs_before_the_initrd_read(tmp_path: Path, pool: GenPool) -> None:
    garbage = imagegen.write_file(tmp_path / "garbage", os.urandom(8192).replace(b"\x7f", b"\0"))
    expect_errno(errno.ENOEXEC, tree_x86(), make_request(garbage, flags=load_flags(1, has_initrd=True)), pool)


def test_l14_no_initramfs_ignores_the_initrd(tmp_path: Path, bz_path: Path, pool: GenPool) -> None:
    for initrd in (None, tmp_path / "closed-fd", tmp_path):
        request = make_request(bz_path, initrd=initrd, flags=load_flags(1, has_initrd=False))
        assert request.flags & KEXEC_FILE_NO_INITRAMFS
        image = prepare_kimage(tree_x86(), request, pool)
        assert "initrd" not in [segment.kind for segment in image.segments]


def test_read_clips_to_the_file(tmp_path: Path) -> None:
    kexec_file = read_kexec_file(imagegen.write_file(tmp_path / "f", b"abcdef"), "kernel")
    assert kexec_file.read(4, 100) == b"ef"
    assert kexec_file.read(6, 1) == b""


def test_missing_path_message_names_the_file_kind(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="initrd"):
        read_kexec_file(tmp_path / "nope", "initrd")


def test_a_file_open_for_writing_is_etxtbsy_before_its_size_is_looked_at(tmp_path: Path, pool: GenPool) -> None:
    """Step 1: deny_write_access comes after the regular-file check and before the i_size checks."""
    empty = tmp_path / "empty"
    with open(empty, "wb"):  # open for writing, still empty
        expect_errno(errno.ETXTBSY, tree_x86(), make_request(empty), pool)
        with pytest.raises(KernelError) as caught:
            read_kexec_file(tmp_path, "kernel")  # a directory is still EINVAL first
        assert caught.value.errno_code == errno.EINVAL
    expect_errno(errno.EINVAL, tree_x86(), make_request(empty), pool)  # closed: the empty-file rule

"""Shared fixtures for the kexec image-path tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mkd.errors import KernelError
from mkd.kernel_types import LoadRequest
from mkd.kexec.flags import load_flags
from mkd.kexec.kexec_file import KexecEnv, PreparedKimage, prepare_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.testing import imagegen

POOL_BASE = 0x1_0000_0000
POOL_BYTES = 1 << 30
CMDLINE_100 = b"c" * 99 + b"\0"  # cmdline_len 100, NUL included

LoadFn = Callable[..., PreparedKimage]


def tree_x86(**overrides: object) -> KexecEnv:
    return KexecEnv(profile="tree", arch="x86_64", **overrides)  # type: ignore[arg-type]


def make_request(
    kernel: Path | None,
    *,
    initrd: Path | None = None,
    cmdline: bytes | None = CMDLINE_100,
    instance_id: int = 1,
    flags: int | None = None,
) -> LoadRequest:
    if flags is None:
        flags = load_flags(instance_id, has_initrd=initrd is not None)
    return LoadRequest(kernel=kernel, initrd=initrd, cmdline=cmdline, flags=flags)


def expect_errno(code: int, env: KexecEnv, request: LoadRequest, pool: GenPool) -> KernelError:
    """prepare_kimage must fail with `code` and leave the pool exactly as it was."""
    before = (pool.avail(), pool.free_ranges())
    with pytest.raises(KernelError) as caught:
        prepare_kimage(env, request, pool)
    assert caught.value.errno_code == code, caught.value.detail
    assert (pool.avail(), pool.free_ranges()) == before
    return caught.value


@pytest.fixture
def pool() -> GenPool:
    return GenPool([(POOL_BASE, POOL_BYTES)])


@pytest.fixture
def bz_path(tmp_path: Path) -> Path:
    """bz() of spec 2.7.6: a 10 485 760-byte file, written sparse."""
    return imagegen.write_sized(tmp_path / "bzImage", imagegen.bzimage(total_len=4096), 10_485_760)


@pytest.fixture
def vmlinux_path(tmp_path: Path) -> Path:
    return imagegen.write_file(tmp_path / "vmlinux", imagegen.vmlinux())


@pytest.fixture
def initrd_5m(tmp_path: Path) -> Path:
    return imagegen.write_file(tmp_path / "initrd.cpio", imagegen.initrd("cpio", 5_000_000))

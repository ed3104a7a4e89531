from __future__ import annotations

import pytest

from mkd.kexec.image_format import HEAD_BYTES, detect_image_format
from mkd.testing import imagegen


def test_head_size() -> None:
    assert HEAD_BYTES == 4096


def test_bzimage() -> None:
    assert detect_image_format(imagegen.bzimage(total_len=HEAD_BYTES)) == "bzImage"


def test_bzimage_needs_boot_flag_too() -> None:
    assert detect_image_format(imagegen.bzimage(total_len=HEAD_BYTES, boot_flag=0)) == "unknown"


def test_elf() -> None:
    assert detect_image_format(imagegen.vmlinux()[:HEAD_BYTES]) == "elf"
    assert detect_image_format(imagegen.vmlinux(machine=183)[:HEAD_BYTES]) == "elf"


def test_arm64_image() -> None:
    assert detect_image_format(imagegen.arm64_image(file_len=HEAD_BYTES)) == "arm64-image"
    assert detect_image_format(imagegen.arm64_image(file_len=HEAD_BYTES, magic=b"ARM\x00")) == "unknown"


@pytest.mark.parametrize("kind", ["cpio", "gzip", "xz", "zstd", "lz4", "bzip2"])
def test_initrds(kind: str) -> None:
    assert detect_image_format(imagegen.initrd(kind, 512)) == "initrd"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "head",
    [b"070702" + bytes(10), b"\x04\x22\x4d\x18" + bytes(10)],
    ids=["cpio-crc", "lz4-frame"],
)
def test_other_initrd_magics(head: bytes) -> None:
    assert detect_image_format(head) == "initrd"


@pytest.mark.parametrize("head", [b"", b"hello world", bytes(4096)])
def test_unknown(head: bytes) -> None:
    assert detect_image_format(head) == "unknown"

"""PreparedKimage persistence, to_kimage and KexecEnv.from_settings."""

from __future__ import annotations

import hashlib
from pathlib import Path

from conftest import CMDLINE_100, make_request, tree_x86

from mkd.config import SimulatorSettings
from mkd.kexec.kexec_file import CONTROL_PAGE_KINDS, KexecEnv, PreparedKimage, prepare_kimage, release_kimage
from mkd.kexec.mem_pool import GenPool


def test_json_round_trip_then_release(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    before = pool.free_ranges()
    image = prepare_kimage(tree_x86(), make_request(bz_path, initrd=initrd_5m), pool)
    restored = PreparedKimage.from_json(image.to_json())
    assert restored == image
    release_kimage(restored, GenPool.from_json(pool.to_json()))
    release_kimage(image, pool)
    assert pool.free_ranges() == before


def test_to_kimage(bz_path: Path, initrd_5m: Path, pool: GenPool) -> None:
    image = prepare_kimage(tree_x86(), make_request(bz_path, initrd=initrd_5m), pool)
    kimage = image.to_kimage(kernel_sha256="k" * 64, initrd_sha256="i" * 64)
    assert kimage.cmdline == CMDLINE_100[:-1].decode()
    assert kimage.loader == "bzImage64" and kimage.start == image.start
    kinds = [segment.kind for segment in kimage.segments]
    assert kinds == ["purgatory", "boot_params", "kernel", "initrd", *CONTROL_PAGE_KINDS]
    assert image.nr_segments == 4
    initrd = kimage.segments[3]
    assert initrd.sha256 == hashlib.sha256(initrd_5m.read_bytes()).hexdigest()
    kernel = kimage.segments[2]
    assert kernel.sha256 == hashlib.sha256(bz_path.read_bytes()[28 * 512 :]).hexdigest()


def test_from_settings() -> None:
    sim = SimulatorSettings(
        kernel_profile="rfc-v2",
        memory_bytes=32 << 30,
        pool_base=4 << 30,
        pool_bytes=4 << 30,
        five_level_paging=True,
        purgatory_bytes=0x5000,
        mk_ipi_abi_version=3,
    )
    env = KexecEnv.from_settings(sim)
    assert env.system_ram == ((0, 4 << 30), (8 << 30, 24 << 30))
    assert env.total_ram_bytes == 28 << 30  # v2 reserves the pool at boot
    assert (env.five_level_paging, env.purgatory_bytes, env.mk_ipi_abi_version) == (True, 0x5000, 3)
    tree = KexecEnv.from_settings(SimulatorSettings(kernel_profile="tree", arch="arm64"))
    assert tree.total_ram_bytes == 32 << 30 and tree.arch == "arm64"

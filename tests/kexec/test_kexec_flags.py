from __future__ import annotations

from mkd.kexec import flags


def test_vector_1_mk_id_encoding() -> None:
    assert flags.kexec_mk_id(1) == 0x20
    assert flags.KEXEC_MULTIKERNEL | flags.kexec_mk_id(1) == 0x30


def test_vector_2_get_mk_id_of_all_ones() -> None:
    assert flags.kexec_get_mk_id(0xFFFF) == 2047


def test_vector_3_id_2048_is_masked_to_zero() -> None:
    assert flags.kexec_mk_id(2048) == 0
    assert flags.kexec_get_mk_id(flags.KEXEC_MULTIKERNEL | flags.kexec_mk_id(2048)) == 0


def test_vector_4_bare_multikernel_flag_carries_id_zero() -> None:
    assert flags.kexec_get_mk_id(0x10) == 0


def test_uapi_values() -> None:
    assert (flags.KEXEC_FILE_UNLOAD, flags.KEXEC_FILE_ON_CRASH) == (0x1, 0x2)
    assert (flags.KEXEC_FILE_NO_INITRAMFS, flags.KEXEC_FILE_DEBUG) == (0x4, 0x8)
    assert flags.KEXEC_MULTIKERNEL == flags.KEXEC_FILE_NO_CMA == 0x10
    assert flags.KEXEC_FILE_FORCE_DTB == 0x20
    assert (flags.KEXEC_MK_ID_SHIFT, flags.KEXEC_MK_ID_MASK) == (5, 0xFFE0)


def test_tree_legal_flag_set_admits_every_id() -> None:
    for instance_id in (1, 2, 1000, 2047):
        assert flags.load_flags(instance_id, has_initrd=False) & ~flags.KEXEC_FILE_FLAGS == 0
    assert flags.KEXEC_FILE_FLAGS & 0x10000 == 0


def test_load_flags_like_kerf() -> None:
    assert flags.load_flags(5, has_initrd=True) == 0x10 | (5 << 5)
    assert flags.load_flags(5, has_initrd=False) == 0x10 | (5 << 5) | flags.KEXEC_FILE_NO_INITRAMFS
    # An odd id sets bit 0x20, which is also FORCE_DTB (spec 2.7.1 step 5).
    assert flags.load_flags(1, has_initrd=True) & flags.KEXEC_FILE_FORCE_DTB
    assert not flags.load_flags(2, has_initrd=True) & flags.KEXEC_FILE_FORCE_DTB

"""kexec_file_load flag layout (spec 2.1, 2.7.1 step 5)."""

from __future__ import annotations

from mkd.kernel_types import MAX_INSTANCE_ID

KEXEC_FILE_UNLOAD = 0x1
KEXEC_FILE_ON_CRASH = 0x2
KEXEC_FILE_NO_INITRAMFS = 0x4
KEXEC_FILE_DEBUG = 0x8
KEXEC_MULTIKERNEL = 0x10
# Mainline reuses these two bits; every multikernel load therefore also reads as NO_CMA and every
# odd instance id as FORCE_DTB (spec 2.7.1 step 5).
KEXEC_FILE_NO_CMA = 0x10
KEXEC_FILE_FORCE_DTB = 0x20

KEXEC_MK_ID_SHIFT = 5
KEXEC_MK_ID_MASK = MAX_INSTANCE_ID << KEXEC_MK_ID_SHIFT  # 0xffe0: bits 5..15

# spec 2.7.1 step 5: the tree's legal set, which settles the 2.1 collision question.
KEXEC_FILE_FLAGS = (
    KEXEC_FILE_UNLOAD
    | KEXEC_FILE_ON_CRASH
    | KEXEC_FILE_NO_INITRAMFS
    | KEXEC_FILE_DEBUG
    | KEXEC_FILE_NO_CMA
    | KEXEC_FILE_FORCE_DTB
    | KEXEC_MK_ID_MASK
)


def kexec_mk_id(instance_id: int) -> int:
    """KEXEC_MK_ID(id): ids above MAX_INSTANCE_ID are silently masked (spec 2.1, KEXEC_MK_ID(2048) == 0)."""
    return (instance_id << KEXEC_MK_ID_SHIFT) & KEXEC_MK_ID_MASK


def kexec_get_mk_id(flags: int) -> int:
    """KEXEC_GET_MK_ID(flags) -> 0..MAX_INSTANCE_ID."""
    return (flags & KEXEC_MK_ID_MASK) >> KEXEC_MK_ID_SHIFT


def load_flags(instance_id: int, *, has_initrd: bool) -> int:
    """The flags kerf passes for a multikernel load (spec 2.7.5): MULTIKERNEL|MK_ID(id)|[NO_INITRAMFS]."""
    flags = KEXEC_MULTIKERNEL | kexec_mk_id(instance_id)
    if not has_initrd:
        flags |= KEXEC_FILE_NO_INITRAMFS
    return flags

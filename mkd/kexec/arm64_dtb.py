"""of_kexec_alloc_and_setup_fdt: the DTB handed to an arm64 kexec kernel (spec 2.7.4 "DTB")."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import libfdt

from mkd.errors import KernelError

FDT_EXTRA_SPACE = 0x1000
RNG_SEED_SIZE = 128


@dataclass(frozen=True)
class DtbInput:
    cmdline: bytes | None  # the kept command line; None when cmdline_len was 0
    initrd: tuple[int, int] | None  # (address, length) when an initrd was placed
    ima_buffer: tuple[int, int] | None  # (address, size) of the IMA segment, when there is one


def _host_fdt() -> bytes:
    """The simulated host's boot DTB: a bare root with an empty /chosen."""
    sw = libfdt.FdtSw()
    sw.finish_reservemap()
    with sw.add_node(""):
        sw.property_u32("#address-cells", 2)
        sw.property_u32("#size-cells", 2)
        with sw.add_node("chosen"):
            pass
    return bytes(sw.as_fdt().as_bytearray())


def build_kexec_dtb(dtb: DtbInput) -> bytes:
    """Build, then fdt_pack, the new kernel's DTB. Any libfdt failure is EINVAL "Preparing for new dtb
    failed"."""
    host = _host_fdt()
    bootargs = dtb.cmdline.split(b"\0", 1)[0] if dtb.cmdline is not None else None
    # The buffer the kernel allocates: host DTB + strlen(cmdline) + 0x1000.
    budget = len(host) + (len(bootargs) if bootargs is not None else 0) + FDT_EXTRA_SPACE
    try:
        fdt = libfdt.Fdt(host)
        fdt.resize(budget)
        chosen = fdt.path_offset("/chosen")
        for stale in ("linux,elfcorehdr", "linux,usable-memory-range"):
            if fdt.hasprop(chosen, stale):
                fdt.delprop(chosen, stale)
        reserved: list[tuple[int, int]] = []
        if dtb.initrd is not None:
            start, length = dtb.initrd
            fdt.setprop_u64(chosen, "linux,initrd-start", start)
            fdt.setprop_u64(chosen, "linux,initrd-end", start + length)
            reserved.append((start, length))
        if bootargs is not None:
            fdt.setprop(chosen, "bootargs", bootargs + b"\0")
        fdt.setprop_u64(chosen, "kaslr-seed", int.from_bytes(os.urandom(8), "little"))
        fdt.setprop(chosen, "rng-seed", os.urandom(RNG_SEED_SIZE))
        fdt.setprop(chosen, "linux,booted-from-kexec", b"")
        if dtb.ima_buffer is not None:
            addr, size = dtb.ima_buffer
            fdt.setprop(chosen, "linux,ima-kexec-buffer", addr.to_bytes(8, "big") + size.to_bytes(8, "big"))
            reserved.append((addr, size))
        fdt.pack()
        packed = bytes(fdt.as_bytearray())
    except libfdt.FdtException as exc:
        raise KernelError(errno.EINVAL, "Preparing for new dtb failed") from exc
    return _with_reservations(packed, reserved) if reserved else packed


def _with_reservations(packed: bytes, reserved: list[tuple[int, int]]) -> bytes:
    """fdt_add_mem_rsv for each range (pylibfdt's Fdt has no add_mem_rsv): rewrite the blob with
    FdtSw, copying the tree node by node."""
    source = libfdt.Fdt(packed)
    sw = libfdt.FdtSw()
    for index in range(source.num_mem_rsv()):
        sw.add_reservemap_entry(*source.get_mem_rsv(index))
    for addr, size in reserved:
        sw.add_reservemap_entry(addr, size)
    sw.finish_reservemap()
    _copy_node(source, 0, sw, "")
    out = sw.as_fdt()
    out.pack()
    return bytes(out.as_bytearray())


def _copy_node(source: libfdt.Fdt, node: int, sw: libfdt.FdtSw, name: str) -> None:
    with sw.add_node(name):
        prop = source.first_property_offset(node, (libfdt.NOTFOUND,))
        while prop >= 0:
            item = source.get_property_by_offset(prop)
            sw.property(item.name, bytes(item))
            prop = source.next_property_offset(prop, (libfdt.NOTFOUND,))
        child = source.first_subnode(node, (libfdt.NOTFOUND,))
        while child >= 0:
            _copy_node(source, child, sw, source.get_name(child))
            child = source.next_subnode(child, (libfdt.NOTFOUND,))

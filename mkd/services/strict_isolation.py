"""Strict isolation (DESIGN "Daemon checks"): before the syscall, run the loader and placement
against the instance's own chunks and refuse a load that would put any byte outside its pool."""

from __future__ import annotations

import errno
from dataclasses import replace

from mkd.errors import KernelError
from mkd.kernel_types import KernelInstance, LoadRequest
from mkd.kexec.kexec_file import KexecEnv, prepare_kimage
from mkd.kexec.mem_pool import GenPool
from mkd.services.context import Daemon


def kexec_env(daemon: Daemon) -> KexecEnv:
    # DESIGN "Two backends": the backend supplies the environment (the host's is read from the
    # running machine), never the [simulator] settings on a host.
    env = daemon.backend.loader_env()
    # The rfc-v2 fallback is what strict isolation exists to catch, so plan with it whatever the
    # profile: a tree kernel would refuse the same load itself with ENOMEM.
    return replace(env, profile="rfc-v2", arch=daemon.host.arch)


def check_strict_isolation(daemon: Daemon, instance: KernelInstance, request: LoadRequest) -> None:
    pool = GenPool((c.base, c.bytes) for c in instance.memory)
    try:
        planned = prepare_kimage(kexec_env(daemon), request, pool)
    except KernelError:
        return  # the kernel refuses this load itself, with its own errno, in its own order
    outside = [s for s in planned.segments if not s.in_pool]
    pages = [p for p in planned.control_pages if not p[2]]
    if daemon.host.kernel_profile != "rfc-v2":
        pages = []  # tree control/swap pages come from kernel memory by design (DESIGN)
    if not outside and not pages:
        return
    if outside:
        seg = outside[0]
        what = (f"segment {planned.segments.index(seg)} ({seg.kind}, {seg.memsz:#x} bytes, "
                f"align {seg.buf_align:#x}, min {seg.buf_min:#x}) does not fit in the instance pool "
                f"({pool_summary(instance)}); {raw_kernel_note(daemon, seg.mem)}")
    else:
        addr, size, _ = pages[0]
        what = (f"a control page ({size:#x} bytes) does not fit in the instance pool "
                f"({pool_summary(instance)}); the raw kernel would take it from system RAM at {addr:#x}")
    raise KernelError(errno.ENOMEM, f"strict isolation: {what}", slug="strict-isolation",
                      instance_id=instance.id)


def raw_kernel_note(daemon: Daemon, fallback_at: int) -> str:
    if daemon.host.kernel_profile == "rfc-v2":
        return f"the raw rfc-v2 kernel would place it in system RAM at {fallback_at:#x}"
    return "the tree kernel refuses this load with ENOMEM too (no fallback, spec 3.3)"


def pool_summary(instance: KernelInstance) -> str:
    total = sum(c.bytes for c in instance.memory)
    chunks = ", ".join(f"{c.base:#x}+{c.bytes:#x}" for c in instance.memory) or "no memory"
    return f"{total} bytes: {chunks}"

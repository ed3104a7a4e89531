"""reboot(2) multikernel commands: spawn, graceful halt, forced halt (spec 6.2)."""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable

from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.model import InstanceRecord, KernelModel, SpawnRecord
from mkd.backends.simulated.states import KEvent, KState, check, transition
from mkd.config import SimulatorSettings
from mkd.errors import KernelError, errno_value

LINUX_REBOOT_MAGIC1 = 0xFEE1DEAD
LINUX_REBOOT_MAGIC2 = 672274793
# reboot(2) accepts any of these as magic2 (kernel/reboot.c)
LINUX_REBOOT_MAGIC2S = (LINUX_REBOOT_MAGIC2, 85072278, 369367448, 537993216)

LINUX_REBOOT_CMD_MULTIKERNEL = 0x4D4B4C49  # "MKLI"
LINUX_REBOOT_CMD_MULTIKERNEL_HALT = 0x4D4B4C48  # "MKLH", tree only
LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE = 0x4D4B4C46  # "MKLF", tree only

HOST_BOOT_CPU = 0  # cannot be taken offline, so an instance booting on it cannot spawn (spec 4)


def check_magic(magic1: int, magic2: int) -> None:
    if magic1 != LINUX_REBOOT_MAGIC1 or magic2 not in LINUX_REBOOT_MAGIC2S:
        raise KernelError(errno.EINVAL, "bad reboot magic")


def _fail_start(faults: Faults, inst: InstanceRecord) -> None:
    """Fault injection: the arch spawn returns the configured errno."""
    if faults.fail_start:
        code = errno_value(faults.fail_start)
        raise KernelError(code, f"spawn failed: {os.strerror(code)} (fault injection)", instance_id=inst.id)


def _missing_sources(inst: InstanceRecord) -> list[str]:
    """Segment sources a spawn re-copies from (spec 3.5); a vanished file region is missing."""
    assert inst.kimage is not None
    missing = []
    segments = inst.kimage.kimage.segments[: inst.kimage.nr_segments]  # control pages have no source
    for segment, source in zip(segments, inst.kimage.sources, strict=True):
        if source.path is None:
            continue
        regions = source.pieces or ((0, source.offset, source.length),)
        needed = max(file_offset + size for _, file_offset, size in regions)
        try:
            present = os.stat(source.path).st_size
        except OSError:
            present = -1
        if present < needed:
            missing.append(segment.kind)
    return missing


def kexec_by_id_v2(model: KernelModel, mk_id: int, faults: Faults) -> InstanceRecord:
    """multikernel_kexec_by_id, v2 (spec 6.2): no state change (the daemon records ACTIVE)."""
    inst = model.instances.get(mk_id) if mk_id > 0 else None
    if inst is None or inst.kimage is None:  # a dangling pointer is not a usable kimage
        raise KernelError(errno.EINVAL, f"no kimage for instance {mk_id}", instance_id=mk_id)
    if not inst.cpus:
        raise KernelError(errno.EINVAL, "instance has no CPUs", instance_id=mk_id)
    boot_cpu = min(inst.cpus)  # cpumask_first
    if boot_cpu == HOST_BOOT_CPU:  # every other reserved CPU was taken offline at creation
        raise KernelError(errno.EBUSY, f"boot CPU {boot_cpu} is online", instance_id=mk_id)
    _fail_start(faults, inst)
    inst.state = transition(model.profile, inst.state, KEvent.START, instance_id=mk_id)
    inst.spawn = SpawnRecord(started_at=time.time())
    return inst


def kexec_by_id_tree(
    model: KernelModel,
    mk_id: int,
    faults: Faults,
    settings: SimulatorSettings,
    finalize: Callable[[InstanceRecord], SpawnRecord] | None = None,
) -> InstanceRecord:
    """multikernel_kexec_by_id, tree (spec 6.2, 1.2). `finalize` builds the boot device tree into
    the manifest page (spec 8.9); its refusal (ENOSPC) leaves the instance LOADED."""
    inst = model.instances.get(mk_id) if mk_id > 0 else None
    if inst is None or inst.kimage is None:
        raise KernelError(errno.EINVAL, f"no kimage for instance {mk_id}", instance_id=mk_id)
    if inst.state == KState.ACTIVE:
        if inst.spawn is not None and inst.spawn.running:
            raise KernelError(errno.EBUSY, "instance is active and its CPUs are not parked", instance_id=mk_id)
        inst.state = KState.LOADED  # recovery: stopped without notice, CPUs parked
        inst.spawn = None
    check(model.profile, inst.state, KEvent.START, instance_id=mk_id)  # state != LOADED -> EBUSY
    if not inst.cpus:
        raise KernelError(errno.EINVAL, "instance has no CPUs", instance_id=mk_id)
    if not 0 <= inst.cpus[0] < settings.cpus:
        raise KernelError(errno.EINVAL, f"boot CPU {inst.cpus[0]} has no logical mapping", instance_id=mk_id)
    missing = _missing_sources(inst)
    if missing:  # spec 3.5: re-copy from kept sources
        raise KernelError(errno.EINVAL, f"segment sources missing: {', '.join(missing)}", instance_id=mk_id)
    if not inst.kimage.kimage.spawnable:
        # spec 2.7.5 (a): a bzImage never sets arch.mk_kernel_entry, so the arch spawn cannot start it
        raise KernelError(errno.EINVAL, "kimage has no multikernel entry point (bzImage)", instance_id=mk_id)
    spawn = finalize(inst) if finalize is not None else SpawnRecord(started_at=time.time())
    _fail_start(faults, inst)
    inst.state = transition(model.profile, inst.state, KEvent.START, instance_id=mk_id)
    inst.spawn = spawn
    return inst


def lookup_for_halt(model: KernelModel, mk_id: int) -> InstanceRecord:
    inst = model.instances.get(mk_id)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance {mk_id}", instance_id=mk_id)
    return inst


def halt_check(model: KernelModel, mk_id: int) -> InstanceRecord:
    """multikernel_halt_by_id up to sending MK_SYS_SHUTDOWN (spec 6.2)."""
    inst = lookup_for_halt(model, mk_id)
    check(model.profile, inst.state, KEvent.HALT, instance_id=mk_id)
    return inst


def halt_acked(model: KernelModel, inst: InstanceRecord) -> None:
    """MK_SYS_SHUTDOWN_ACK received: CPUs parked, state LOADED."""
    inst.state = transition(model.profile, inst.state, KEvent.HALT, instance_id=inst.id)
    inst.spawn = None


def force_halt(model: KernelModel, mk_id: int) -> InstanceRecord:
    """multikernel_force_halt_by_id (spec 6.2): repeatable on LOADED."""
    inst = lookup_for_halt(model, mk_id)
    next_state = transition(model.profile, inst.state, KEvent.HALT_FORCE, instance_id=mk_id)
    if not inst.cpus:
        raise KernelError(errno.EINVAL, "instance has no CPUs", instance_id=mk_id)
    inst.state = next_state
    inst.spawn = None
    return inst

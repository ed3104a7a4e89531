"""Resource ops on an ACTIVE instance at v7.0-mk2 (spec 8.7, hotplug.c@3dc6b66f).

Each op sends an MK_RES_* message to the running spawn and waits for its ACK
(`resource_ack_timeout_s`, 10 s in the release; ETIMEDOUT when none comes). The steps run in the
release's order, including its quirks: memory-add allocates from the pool by size after the
spawn has onlined the range it was told about, device bookkeeping only warns. Nothing already
applied is undone when a later op fails.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from mkd.backends.simulated.model import InstanceRecord, SpawnRecord
from mkd.backends.simulated.overlay_context import OpContext, instance_memory_carve, instance_memory_give
from mkd.backends.simulated.spawn_timeline import hung
from mkd.errors import KernelError

log = logging.getLogger(__name__)

# Drivers a simulated spawn kernel has built in; `driver = "..."` naming another is ENOENT (8.7.6).
SPAWN_DRIVERS = frozenset({"vfio-pci", "nvme", "virtio-pci", "e1000e", "igb", "ixgbe", "mlx5_core", "ahci", "xhci_hcd"})


@dataclass(frozen=True)
class MemoryRange:
    base: int
    size: int


def spawn_answers(ctx: OpContext, inst: InstanceRecord) -> bool:
    """Whether the running spawn reads its ring and ACKs (not wedged, not hung, not told otherwise)."""
    spawn = inst.spawn
    if spawn is None or not spawn.running:
        return False
    if hung(spawn, ctx.now):
        return False
    return ctx.faults.update_ack and ctx.faults.spawn(inst.name).ack


def _send(ctx: OpContext, inst: InstanceRecord, message: str) -> SpawnRecord:
    """Send MK_RES_<message> and wait for the ACK (spec 8.3.3)."""
    if not spawn_answers(ctx, inst) or inst.spawn is None:
        ctx.wait(ctx.settings.resource_ack_timeout_s)
        raise KernelError(errno.ETIMEDOUT, f"no MK_RES_ACK for {message} from {inst.name}", instance_id=inst.id)
    return inst.spawn


def cpu_add(ctx: OpContext, inst: InstanceRecord, cpu: int) -> None:
    """8.7.1: the CPU must be free in the pool; the spawn onlines it only if it saw it at boot."""
    if cpu not in ctx.model.free_cpus():
        raise KernelError(errno.EBUSY, f"CPU {cpu} is not free in the pool", instance_id=inst.id)
    spawn = _send(ctx, inst, "CPU_ADD")  # a failure from here on leaves the CPU free in the pool
    if cpu not in spawn.boot_cpus:
        raise KernelError(errno.ENODEV, f"the spawn did not enumerate CPU {cpu} at boot", instance_id=inst.id)
    inst.cpus.append(cpu)


def cpu_remove(ctx: OpContext, inst: InstanceRecord, cpu: int) -> None:
    """8.7.2: the boot CPU cannot go; on success the CPU is free in the pool again."""
    if not ctx.model.pool_cpus:
        raise KernelError(errno.ENODEV, "there is no multikernel pool", instance_id=inst.id)
    _send(ctx, inst, "CPU_REMOVE")
    if inst.cpus and cpu == inst.cpus[0]:
        raise KernelError(errno.EINVAL, f"CPU {cpu} is the boot CPU of {inst.name}", instance_id=inst.id)
    if cpu not in inst.cpus:
        raise KernelError(errno.ENODEV, f"{inst.name} does not have CPU {cpu}", instance_id=inst.id)
    inst.cpus.remove(cpu)


def _check_blocks(ctx: OpContext, inst: InstanceRecord, memory: MemoryRange) -> None:
    block = ctx.settings.memory_block_size
    if memory.base % block or memory.size % block:
        raise KernelError(
            errno.EINVAL,
            f"{memory.base:#x}+{memory.size:#x} is not aligned to the memory block size {block:#x}",
            instance_id=inst.id,
        )


def memory_add(ctx: OpContext, inst: InstanceRecord, memory: MemoryRange, node: int | None) -> list[tuple[int, int]]:
    """8.7.3: the spawn checks and onlines [base, base+size); the host then allocates `size` by size."""
    _send(ctx, inst, "MEM_ADD")
    _check_blocks(ctx, inst, memory)
    return instance_memory_carve(ctx.model, inst, memory.size, node)


def memory_remove(ctx: OpContext, inst: InstanceRecord, memory: MemoryRange) -> None:
    """8.7.4: the spawn's alignment check, then the host's exact-region rule (after the spawn removed it)."""
    _send(ctx, inst, "MEM_REMOVE")
    _check_blocks(ctx, inst, memory)
    instance_memory_give(ctx.model, inst, memory.base, memory.size)


def device_add(ctx: OpContext, inst: InstanceRecord, device: str, driver: str | None) -> None:
    """8.7.6: no pool check; the spawn binds `driver`; host bookkeeping only warns."""
    spawn = _send(ctx, inst, "DEVICE_ADD")
    if device not in spawn.boot_devices:
        raise KernelError(errno.ENODEV, f"the spawn did not enumerate {device} at boot", instance_id=inst.id)
    if driver is not None:
        if driver not in SPAWN_DRIVERS:
            raise KernelError(errno.ENOENT, f"the spawn has no driver {driver!r}", instance_id=inst.id)
        spawn.drivers[device] = driver
    if device in inst.devices:
        return
    if device in ctx.model.free_devices():
        inst.devices.append(device)
    else:
        log.warning("multikernel: device %s is not free in the pool; %s uses it anyway", device, inst.name)


def device_remove(ctx: OpContext, inst: InstanceRecord, device: str) -> None:
    """8.7.7: the spawn unbinds it; host bookkeeping only warns."""
    spawn = _send(ctx, inst, "DEVICE_REMOVE")
    if device not in spawn.boot_devices:
        raise KernelError(errno.ENODEV, f"the spawn did not enumerate {device}", instance_id=inst.id)
    spawn.drivers.pop(device, None)
    if device in inst.devices:
        inst.devices.remove(device)
    else:
        log.warning("multikernel: device %s was not listed for %s", device, inst.name)

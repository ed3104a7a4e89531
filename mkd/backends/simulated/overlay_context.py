"""What an overlay op works with, and the instance memory rules both target kinds share
(spec 5.4, 8.6.2): the context object, carving by size and giving back an exact region."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.config import SimulatorSettings
from mkd.errors import KernelError


@dataclass(frozen=True)
class OpContext:
    model: KernelModel
    settings: SimulatorSettings
    faults: Faults
    now: float = field(default_factory=time.time)  # the kernel's clock when the write began
    wait: Callable[[float], object] = time.sleep  # how the writer waits for an ACK that never comes


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


def instance_memory_carve(
    model: KernelModel, inst: InstanceRecord, size: int, node: int | None
) -> list[tuple[int, int]]:
    """memory-add: `size` bytes from the pool, on `node` if given; the item's base is ignored (8.6.2)."""
    if size > model.pool.avail_bytes():  # spec 3.2 pre-check
        raise KernelError(errno.ENOMEM, f"{size:#x} bytes exceed what the pool has available", instance_id=inst.id)
    chunks = model.pool.carve(size, inst.numa_node if node is None else node)
    for base, chunk_size in chunks:
        inst.chunks.append((base, chunk_size))
        inst.pool.add_chunk(base, chunk_size)
    return chunks


def instance_memory_give(model: KernelModel, inst: InstanceRecord, base: int, size: int) -> None:
    """memory-remove (8.6.2): a range holding a kimage segment is EBUSY (checked first); otherwise
    it must name one of the instance's regions exactly, else ENOENT."""
    held = inst.kimage.pool_allocations if inst.kimage is not None else []
    if any(_overlaps((base, size), allocation) for allocation in held):
        raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} holds a kimage segment", instance_id=inst.id)
    if (base, size) not in inst.chunks:
        raise KernelError(errno.ENOENT, f"{base:#x}+{size:#x} is not a memory region of {inst.name}")
    try:
        inst.pool.remove_chunk(base, size)
    except ValueError as exc:  # a control page lives there
        raise KernelError(errno.EBUSY, f"memory {base:#x}+{size:#x} is in use", instance_id=inst.id) from exc
    inst.chunks.remove((base, size))
    model.pool.free(base, size)

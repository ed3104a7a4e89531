"""The global pool's own operations (spec 3.1, 5.1): the v2 boot reservation, growing a tree
chunk from the page allocator, and recording the baseline the device_tree write or a /resources
overlay applied (sysfs_dt.py and overlay_ops.py parse those and call these)."""

from __future__ import annotations

import errno

from mkd.backends.simulated.global_pool import GlobalPool, PoolChunk
from mkd.backends.simulated.model import KernelModel
from mkd.config import SimulatorSettings
from mkd.errors import KernelError
from mkd.kernel_types import PoolSpec
from mkd.kexec.mem_pool import GenPool


def boot_pool(settings: SimulatorSettings) -> GlobalPool:
    """rfc-v2 before any baseline: the whole `mkkernel_pool=` reservation (spec 3.1)."""
    return GlobalPool.single(settings.pool_base, settings.pool_bytes)


def grow_chunk(model: KernelModel, size: int, *, node: int | None, hint: int | None) -> PoolChunk:
    """mk_pool_mem_grow(size, node, &base) (spec 3.1, 5.5): a new chunk on `node` (None: any)."""
    assert model.ram is not None
    placed = model.ram.take(size, node, hint)
    if placed is None:
        where = "" if node is None else f" on NUMA node {node}"
        raise KernelError(errno.ENOMEM, f"cannot grow the multikernel pool by {size:#x} bytes{where}")
    base, placed_node = placed
    chunk = PoolChunk(base, size, placed_node, GenPool(chunks=[(base, size)]))
    model.pool.chunks.append(chunk)
    return chunk


def record_baseline(model: KernelModel, spec: PoolSpec) -> None:
    """Remember the applied baseline: its spec, CPUs, devices and LLC mask."""
    model.pool_spec = spec
    model.pool_cpus = list(dict.fromkeys(spec.cpus))
    model.pool_devices = list(dict.fromkeys(spec.devices))
    model.pool_llc_way_mask = spec.llc_way_mask

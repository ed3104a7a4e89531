"""What the kernel shows: KernelInstance / PoolState records and sysfs-like strings."""

from __future__ import annotations

from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.backends.simulated.states import status_string
from mkd.kernel_types import KernelInstance, MemChunk, PoolState

DANGLING_KIMAGE = "dangling kimage: the v2 error path left the instance loading (bug-compatible)"


def instance_view(model: KernelModel, inst: InstanceRecord, node_of: dict[int, int | None]) -> KernelInstance:
    failure = inst.failure
    if inst.dangling_kimage and failure is None:
        failure = DANGLING_KIMAGE
    return KernelInstance(
        id=inst.id,
        name=inst.name,
        kernel_state=status_string(model.profile, inst.state),
        cpus=tuple(inst.cpus),
        memory=tuple(MemChunk(base, size, node_of.get(base)) for base, size in inst.chunks),
        memory_bytes=inst.memory_bytes,
        llc_way_mask=inst.llc_way_mask,
        devices=tuple(inst.devices),
        kimage=None if inst.kimage is None else inst.kimage.kimage,
        failure=failure,
    )


def chunk_nodes(model: KernelModel, inst: InstanceRecord) -> dict[int, int | None]:
    """NUMA node of each instance chunk: the node of the global chunk it was carved from."""
    nodes: dict[int, int | None] = {}
    for base, _ in inst.chunks:
        chunk = model.pool.chunk_at(base)
        nodes[base] = None if chunk is None else chunk.node
    return nodes


def pool_view(model: KernelModel) -> PoolState:
    free_llc = None
    if model.pool_llc_way_mask is not None:
        free_llc = model.pool_llc_way_mask & ~model.lent_llc_ways()
    return PoolState(
        spec=model.pool_spec,
        chunks=tuple(MemChunk(c.base, c.size, c.node) for c in model.pool.chunks),
        free_cpus=tuple(model.free_cpus()),
        free_memory_bytes=model.pool.avail_bytes(),
        free_llc_way_mask=free_llc,
        free_devices=tuple(model.free_devices()),
    )


def status_file(model: KernelModel, inst: InstanceRecord) -> str:
    """instances/<name>/status (spec 6.1)."""
    return status_string(model.profile, inst.state) + "\n"


def id_file(inst: InstanceRecord) -> str:
    """instances/<name>/id (spec 6.1)."""
    return f"{inst.id}\n"

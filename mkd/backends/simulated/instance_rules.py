"""Creating and destroying instances with each kernel generation's rules (spec 3.2, 4, 5.2, 5.3)."""

from __future__ import annotations

import errno

from mkd.backends.simulated.global_pool import PAGE_SIZE
from mkd.backends.simulated.kimages import free_kimage
from mkd.backends.simulated.model import InstanceRecord, KernelModel
from mkd.backends.simulated.states import KEvent, KState, Outcome, check
from mkd.config import SimulatorSettings
from mkd.errors import KernelError
from mkd.kernel_types import MAX_NUMNODES, InstanceSpec
from mkd.kexec.mem_pool import GenPool

U32_MAX = 0xFFFF_FFFF


def _llc_checks(model: KernelModel, spec: InstanceSpec) -> None:
    """spec 4.1 (documented, errno inferred): non-zero, inside the baseline, no overlap."""
    mask = spec.llc_way_mask
    if mask is None:
        return
    if mask == 0 or model.pool_llc_way_mask is None or mask & ~model.pool_llc_way_mask:
        raise KernelError(errno.EINVAL, f"llc-way-mask {mask:#x} is zero or not a subset of the baseline")
    if mask & model.lent_llc_ways():
        raise KernelError(errno.EBUSY, f"llc-way-mask {mask:#x} overlaps another instance's ways")


def _take_devices(model: KernelModel, spec: InstanceSpec) -> list[str]:
    """A device not free in the pool is only logged; the instance is created without it (5.3)."""
    free = set(model.free_devices())
    return [device for device in dict.fromkeys(spec.devices) if device in free]


def _new_pool(chunks: list[tuple[int, int]]) -> GenPool:
    return GenPool(chunks=list(chunks))


def create_v2(model: KernelModel, spec: InstanceSpec, settings: SimulatorSettings) -> InstanceRecord:
    """Per-instance creation of a v2 root-DTB write, in the kernel's order (spec 5.2)."""
    # step 2: kernfs directory instances/<name>
    if model.by_name(spec.name) is not None:
        raise KernelError(errno.EEXIST, f"instance {spec.name} already exists")
    # step 3: parse resources
    if spec.memory_bytes and (spec.memory_bytes > U32_MAX or spec.memory_bytes % PAGE_SIZE):
        raise KernelError(errno.EINVAL, "memory-bytes must be a page-aligned u32")
    for cpu in spec.cpus:
        if cpu < 0 or cpu >= settings.cpus:
            raise KernelError(errno.EINVAL, f"CPU {cpu} is not below nr_cpu_ids ({settings.cpus})")
    _llc_checks(model, spec)
    # step 4: reserve memory (instance pool); CPU offlining failures are only warnings
    chunks = model.pool.carve(spec.memory_bytes) if spec.memory_bytes else []
    # step 6: IDR slot at exactly `id`
    if spec.id in model.instances or spec.id < 0:
        for base, size in chunks:
            model.pool.free(base, size)
        code = errno.ENOSPC if spec.id >= 0 else errno.EINVAL
        raise KernelError(code, f"instance id {spec.id} is not available")
    inst = InstanceRecord(
        id=spec.id,
        name=spec.name,
        state=KState.READY,
        cpus=sorted(set(spec.cpus)),  # a cpumask: order and duplicates are lost
        chunks=chunks,
        pool=_new_pool(chunks),
        llc_way_mask=spec.llc_way_mask,
        devices=_take_devices(model, spec),
    )
    model.instances[inst.id] = inst
    return inst


def create_tree(model: KernelModel, spec: InstanceSpec) -> InstanceRecord:
    """Overlay `instance-create` (spec 5.3)."""
    if not spec.name or "/" in spec.name:
        raise KernelError(errno.EINVAL, "instance-name must be non-empty and contain no '/'")
    if spec.memory_bytes % PAGE_SIZE:
        raise KernelError(errno.EINVAL, "memory-bytes must be a page multiple")
    if spec.numa_node is not None and not 0 <= spec.numa_node < MAX_NUMNODES:
        raise KernelError(errno.EINVAL, f"numa node {spec.numa_node} is out of range")
    if model.by_name(spec.name) is not None:
        raise KernelError(errno.EEXIST, f"instance {spec.name} already exists")
    if spec.id in model.instances:
        raise KernelError(errno.EEXIST, f"instance id {spec.id} is already used")
    if spec.id == 0:
        raise KernelError(errno.ENOMEM, "ID 0 is reserved for the host kernel")
    if spec.id < 0:
        raise KernelError(errno.EINVAL, f"instance id {spec.id} is invalid")
    _llc_checks(model, spec)
    # spec 3.2 tree pre-check, then carving from the requested node
    if spec.memory_bytes > model.pool.avail_bytes():
        raise KernelError(errno.ENOMEM, f"{spec.memory_bytes:#x} bytes exceed what the pool has available")
    chunks = model.pool.carve(spec.memory_bytes, spec.numa_node) if spec.memory_bytes else []
    # spec 4: every CPU must be free in the pool, all or nothing; a miss is only logged
    wanted = list(dict.fromkeys(spec.cpus))
    free = set(model.free_cpus())
    cpus = wanted if all(cpu in free for cpu in wanted) else []
    inst = InstanceRecord(
        id=spec.id,
        name=spec.name,
        state=KState.READY,
        cpus=cpus,
        chunks=chunks,
        pool=_new_pool(chunks),
        llc_way_mask=spec.llc_way_mask,
        devices=_take_devices(model, spec),
        numa_node=spec.numa_node,
    )
    model.instances[inst.id] = inst
    return inst


def destroy(model: KernelModel, instance_id: int) -> None:
    """v2 rmdir / tree instance-remove: resources return to the pool (spec 1.1, 1.2, 5.4)."""
    inst = model.instances.get(instance_id)
    if inst is None:
        raise KernelError(errno.ENOENT, f"no instance {instance_id}", instance_id=instance_id)
    if check(model.profile, inst.state, KEvent.DESTROY, instance_id=instance_id) is not Outcome.DESTROYED:
        raise AssertionError("DESTROY yields DESTROYED or a refusal")
    if inst.has_kimage:  # a FAILED instance may still hold its kimage
        free_kimage(model, inst)
    for base, size in inst.chunks:
        model.pool.free(base, size)
    del model.instances[instance_id]

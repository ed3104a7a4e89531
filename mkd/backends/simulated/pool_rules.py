"""Applying the baseline (PoolSpec) the way each kernel generation does (spec 3.1, 4, 5.1, 5.4)."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from dataclasses import replace

from mkd.backends.simulated.global_pool import PAGE_SIZE, GlobalPool, PoolChunk
from mkd.backends.simulated.model import KernelModel
from mkd.config import SimulatorSettings
from mkd.errors import KernelError
from mkd.kernel_types import PoolSpec
from mkd.kexec.mem_pool import GenPool

NR_CPUS = 8192  # CONFIG_NR_CPUS of the simulated build: above it a CPU id is invalid, not absent


def boot_pool(settings: SimulatorSettings) -> GlobalPool:
    """rfc-v2 before any baseline: the whole `mkkernel_pool=` reservation (spec 3.1)."""
    return GlobalPool.single(settings.pool_base, settings.pool_bytes)


def _check_present_cpus(cpus: Iterable[int], settings: SimulatorSettings) -> None:
    for cpu in cpus:
        if cpu < 0 or cpu >= NR_CPUS:
            raise KernelError(errno.EINVAL, f"CPU {cpu} is not a valid CPU id")
        if cpu >= settings.cpus:
            raise KernelError(errno.ENODEV, f"CPU {cpu} is not present")


def _check_present_devices(devices: Iterable[str], settings: SimulatorSettings) -> None:
    for device in devices:
        if device not in settings.devices:
            raise KernelError(errno.ENODEV, f"device {device} is not present")


def _check_llc_mask(mask: int | None, settings: SimulatorSettings) -> None:
    # spec 4.1 (documentation only): the baseline mask is a resctrl capacity bitmask of real ways
    if mask is not None and (mask == 0 or mask & ~((1 << settings.llc_ways) - 1)):
        raise KernelError(errno.EINVAL, f"llc-way-mask {mask:#x} is zero or names ways the LLC lacks")


def _check_holdings_kept(model: KernelModel, spec: PoolSpec) -> None:
    """A baseline change never takes away what an instance holds."""
    wanted_cpus = set(spec.cpus)
    for inst in model.instances.values():
        held = sorted(set(inst.cpus) - wanted_cpus)
        if held:
            raise KernelError(errno.EBUSY, f"CPUs {held} are held by instance {inst.name}", instance_id=inst.id)
        devices = sorted(set(inst.devices) - set(spec.devices))
        if devices:
            raise KernelError(errno.EBUSY, f"devices {devices} are held by instance {inst.name}", instance_id=inst.id)
        if inst.llc_way_mask and (spec.llc_way_mask is None or inst.llc_way_mask & ~spec.llc_way_mask):
            raise KernelError(
                errno.EBUSY, f"LLC ways {inst.llc_way_mask:#x} are held by instance {inst.name}", instance_id=inst.id
            )


def _set_common(model: KernelModel, spec: PoolSpec) -> None:
    model.pool_spec = spec
    model.pool_cpus = list(dict.fromkeys(spec.cpus))
    model.pool_devices = list(dict.fromkeys(spec.devices))
    model.pool_llc_way_mask = spec.llc_way_mask


def apply_pool_v2(model: KernelModel, spec: PoolSpec, settings: SimulatorSettings) -> None:
    """rfc-v2 (with the mid baseline's rules): the baseline is a range of the boot pool.

    Re-applying replaces the previous baseline (spec 5.1 "mid"); instances keep their chunks,
    so the new range must still contain them.
    """
    if spec.memory_bytes == 0 or spec.memory_bytes % PAGE_SIZE or spec.memory_base % PAGE_SIZE:
        raise KernelError(errno.EINVAL, "memory-base/memory-bytes must be page aligned and non-zero")
    if spec.memory_bytes > settings.pool_bytes:
        raise KernelError(errno.ERANGE, f"baseline {spec.memory_bytes:#x} bytes exceeds the boot pool")
    pool_end = settings.pool_base + settings.pool_bytes
    if spec.memory_base < settings.pool_base or spec.memory_base + spec.memory_bytes > pool_end:
        raise KernelError(errno.EINVAL, "baseline memory lies outside the boot pool (mkkernel_pool=)")
    if not spec.cpus:
        raise KernelError(errno.EINVAL, "baseline cpus must not be empty")
    _check_present_cpus(spec.cpus, settings)
    _check_present_devices(spec.devices, settings)
    _check_llc_mask(spec.llc_way_mask, settings)
    _check_holdings_kept(model, spec)
    pool = GlobalPool.single(spec.memory_base, spec.memory_bytes)
    for inst in model.instances.values():
        for base, size in inst.chunks:
            if not pool.alloc_at(base, size):
                raise KernelError(
                    errno.EBUSY,
                    f"memory {base:#x}+{size:#x} of instance {inst.name} lies outside the new baseline",
                    instance_id=inst.id,
                )
    model.pool = pool
    _set_common(model, spec)


def _apply_first_tree_baseline(model: KernelModel, spec: PoolSpec, settings: SimulatorSettings) -> None:
    """tree baseline write (spec 5.1): cpus, one memory@ chunk grown at the hinted base."""
    if not spec.cpus:
        raise KernelError(errno.EINVAL, "baseline cpus must not be empty")
    if spec.memory_bytes == 0 or spec.memory_bytes % PAGE_SIZE:
        raise KernelError(errno.EINVAL, "memory size must be a non-zero page multiple")
    _check_present_cpus(spec.cpus, settings)
    _check_present_devices(spec.devices, settings)
    _check_llc_mask(spec.llc_way_mask, settings)
    _grow(model, spec.memory_bytes, hint=spec.memory_base or None)
    _set_common(model, spec)


def _grow(model: KernelModel, size: int, *, hint: int | None) -> None:
    """mk_pool_mem_grow (spec 3.1): a new chunk from the page allocator."""
    grow_chunk(model, size, node=None, hint=hint)


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
    _set_common(model, spec)


def _chunks_to_shrink(model: KernelModel, size: int) -> list[PoolChunk]:
    """Whole free chunks that add up to exactly `size`, newest first (spec 3.1 shrink rule)."""
    chosen: list[PoolChunk] = []
    remaining = size
    for chunk in reversed(model.pool.chunks):
        if chunk.is_whole_free() and chunk.size <= remaining:
            chosen.append(chunk)
            remaining -= chunk.size
    if remaining:
        names = ", ".join(
            f"{c.base:#x}+{c.size:#x}{'' if c.is_whole_free() else ' (in use)'}" for c in model.pool.chunks
        )
        raise KernelError(errno.EBUSY, f"shrinking by {size:#x} bytes needs whole free chunks; chunks: {names}")
    return chosen


def apply_pool_tree(model: KernelModel, spec: PoolSpec, settings: SimulatorSettings) -> bool:
    """tree: the first call is the baseline write; later ones a /resources overlay (spec 5.4).

    Ops run in the /resources order (cpu-remove, device-remove, memory-remove, memory-add,
    cpu-add, device-add). The caller works on a copy of the model, so the first error leaves
    the kernel unchanged. Returns whether anything changed. Without `llc_way_masks` the release
    ignores the mask (spec 8.6.3).
    """
    if not settings.llc_way_masks:
        spec = replace(spec, llc_way_mask=None)
    if not model.pool.chunks and not model.pool_cpus:
        _apply_first_tree_baseline(model, spec, settings)
        return True
    if spec.memory_bytes == 0 or spec.memory_bytes % PAGE_SIZE:
        raise KernelError(errno.EINVAL, "memory size must be a non-zero page multiple")
    _check_llc_mask(spec.llc_way_mask, settings)
    lent_cpus, lent_devices = model.lent_cpus(), model.lent_devices()
    before = (list(model.pool_cpus), list(model.pool_devices), model.pool.total_bytes(), model.pool_llc_way_mask)
    # cpu-remove: a CPU lent to an instance is not free in the pool
    for cpu in [c for c in model.pool_cpus if c not in spec.cpus]:
        if cpu in lent_cpus:
            raise KernelError(errno.EBUSY, f"CPU {cpu} is not free in the pool (held by an instance)")
        model.pool_cpus.remove(cpu)
    # device-remove
    for device in [d for d in model.pool_devices if d not in spec.devices]:
        if device in lent_devices:
            raise KernelError(errno.EBUSY, f"device {device} is not free in the pool (held by an instance)")
        model.pool_devices.remove(device)
    # memory-remove, then memory-add
    total = model.pool.total_bytes()
    if spec.memory_bytes < total:
        for chunk in _chunks_to_shrink(model, total - spec.memory_bytes):
            model.pool.chunks.remove(chunk)
            assert model.ram is not None and chunk.node is not None
            model.ram.give_back(chunk.base, chunk.size, chunk.node)
    elif spec.memory_bytes > total:
        _grow(model, spec.memory_bytes - total, hint=None)
    # cpu-add, device-add
    for cpu in spec.cpus:
        if cpu not in model.pool_cpus:
            _check_present_cpus([cpu], settings)
            model.pool_cpus.append(cpu)
    for device in spec.devices:
        if device not in model.pool_devices:
            _check_present_devices([device], settings)
            model.pool_devices.append(device)
    held_ways = model.lent_llc_ways()
    if held_ways and (spec.llc_way_mask is None or held_ways & ~spec.llc_way_mask):
        raise KernelError(errno.EBUSY, f"LLC ways {held_ways:#x} are held by instances")
    model.pool_spec = spec
    model.pool_llc_way_mask = spec.llc_way_mask
    after = (model.pool_cpus, model.pool_devices, model.pool.total_bytes(), model.pool_llc_way_mask)
    return before != after

"""The multikernel pool on the host: read it back, apply a baseline, change it.

- tree: the kernel keeps the pool and reads it back as a DTB (spec 5.1). The first apply is the
  baseline write; later ones are /resources overlays in spec 5.4 order.
- rfc-v2: the pool is the boot reservation (mkkernel_pool=, /proc/iomem) and the kernel keeps
  no baseline; the daemon's baseline travels in the root tree's /resources node, which v2
  ignores (DESIGN "Device trees per profile"), and is remembered in HostState.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Protocol

from mkd.backends.host.overlays import OverlayApplier
from mkd.backends.host.procfs import Procfs
from mkd.backends.host.readback import PoolReadback, parse_pool_dtb
from mkd.backends.host.state import HostState
from mkd.backends.host.sysfs import MultikernelFs
from mkd.devicetree.build import build_baseline_dtb, build_root_tree
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelInstance, KernelProfile, MemChunk, PoolSpec, PoolState


class Holding(Protocol):
    """What an instance takes from the pool: a KernelInstance, or just its parsed resources."""

    @property
    def cpus(self) -> tuple[int, ...]: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def devices(self) -> tuple[str, ...]: ...


EMPTY_POOL = PoolState(spec=None, chunks=(), free_cpus=(), free_memory_bytes=0, free_llc_way_mask=None, free_devices=())


class PoolKeeper:
    def __init__(self, fs: MultikernelFs, procfs: Procfs, state: HostState, overlays: OverlayApplier) -> None:
        self.fs = fs
        self.procfs = procfs
        self.state = state
        self.overlays = overlays

    # -- read -------------------------------------------------------------------------------

    def read(self, profile: KernelProfile, instances: Sequence[Holding]) -> PoolState:
        if profile == "tree":
            return self._read_tree(parse_pool_dtb(self.fs.read_root_tree()), instances)
        return self._read_v2(instances)

    def _read_tree(self, pool: PoolReadback, instances: Sequence[Holding]) -> PoolState:
        if not pool.baseline_applied:
            return EMPTY_POOL
        recorded = self.state.pool
        total = sum(chunk.bytes for chunk in pool.chunks)
        spec = PoolSpec(
            cpus=pool.cpus,
            memory_base=pool.chunks[0].base if pool.chunks else 0,
            memory_bytes=total,
            # The kernel keeps no LLC mask (spec 4.1 is documentation only): ours is the record.
            llc_way_mask=recorded.llc_way_mask if recorded is not None else None,
            devices=pool.devices,
        )
        return PoolState(
            spec=spec,
            chunks=pool.chunks,
            free_cpus=pool.cpus_available,
            free_memory_bytes=max(0, total - _used_memory(instances)),
            free_llc_way_mask=spec.llc_way_mask,
            free_devices=_free_devices(pool.devices, instances),
        )

    def _read_v2(self, instances: Sequence[Holding]) -> PoolState:
        spec = self.state.pool
        if spec is None:
            return EMPTY_POOL
        used_cpus = {cpu for instance in instances for cpu in instance.cpus}
        return PoolState(
            spec=spec,
            chunks=(MemChunk(base=spec.memory_base, bytes=spec.memory_bytes),),
            free_cpus=tuple(cpu for cpu in spec.cpus if cpu not in used_cpus),
            free_memory_bytes=max(0, spec.memory_bytes - _used_memory(instances)),
            free_llc_way_mask=spec.llc_way_mask,
            free_devices=_free_devices(spec.devices, instances),
        )

    def v2_free_memory(self, instances: Sequence[KernelInstance]) -> int | None:
        """Bytes the v2 boot pool has left: the baseline's, else the whole reservation's."""
        if self.state.pool is not None:
            return self._read_v2(instances).free_memory_bytes
        region = self.procfs.pool_region()
        return None if region is None else max(0, region.size - _used_memory(instances))

    # -- apply ------------------------------------------------------------------------------

    def apply(self, profile: KernelProfile, spec: PoolSpec, instances: Sequence[KernelInstance]) -> None:
        if profile == "tree":
            self._apply_tree(spec)
        else:
            self._apply_v2(spec, instances)
        self.state.set_pool(spec)

    def _apply_tree(self, spec: PoolSpec) -> None:
        current = parse_pool_dtb(self.fs.read_root_tree())
        if not current.baseline_applied:
            # spec 5.1: the first baseline is a device_tree write. PCI devices need vendor and
            # device ids in a baseline, which a PoolSpec lacks, so they follow as device-add.
            self.fs.write_root_tree(build_baseline_dtb(spec))
            if spec.devices:
                self.overlays.change_resources(device_add=spec.devices)
            return
        total = sum(chunk.bytes for chunk in current.chunks)
        memory_remove: list[MemChunk] = []
        memory_add: list[MemChunk] = []
        if spec.memory_bytes < total:
            memory_remove = self._chunks_to_shrink(current.chunks, total - spec.memory_bytes)
        elif spec.memory_bytes > total:
            memory_add = [MemChunk(base=0, bytes=spec.memory_bytes - total)]
        cpu_remove = [cpu for cpu in current.cpus if cpu not in spec.cpus]
        cpu_add = [cpu for cpu in spec.cpus if cpu not in current.cpus]
        device_remove = [device for device in current.devices if device not in spec.devices]
        device_add = [device for device in spec.devices if device not in current.devices]
        if memory_remove or memory_add or cpu_remove or cpu_add or device_remove or device_add:
            self.overlays.change_resources(
                cpu_remove=cpu_remove,
                cpu_add=cpu_add,
                memory_remove=memory_remove,
                memory_add=memory_add,
                device_remove=device_remove,
                device_add=device_add,
            )

    def _chunks_to_shrink(self, chunks: Sequence[MemChunk], size: int) -> list[MemChunk]:
        """Whole unused chunks adding up to `size`, highest first (spec 3.1: shrink names a chunk)."""
        regions = [chunk for owned in self.procfs.instance_regions().values() for chunk in owned]

        def in_use(chunk: MemChunk) -> bool:
            return any(chunk.base <= region.base < chunk.base + chunk.bytes for region in regions)

        chosen, remaining = [], size
        for chunk in sorted(chunks, key=lambda chunk: chunk.base, reverse=True):
            if not in_use(chunk) and chunk.bytes <= remaining:
                chosen.append(chunk)
                remaining -= chunk.bytes
        if remaining:
            listing = ", ".join(
                f"{chunk.base:#x}+{chunk.bytes:#x}{' (in use)' if in_use(chunk) else ''}" for chunk in chunks
            )
            raise KernelError(errno.EBUSY, f"shrinking by {size:#x} bytes needs whole free chunks; chunks: {listing}")
        return chosen

    def _apply_v2(self, spec: PoolSpec, instances: Sequence[KernelInstance]) -> None:
        region = self.procfs.pool_region()
        if region is not None:
            # DESIGN "Device trees per profile": the baseline must lie inside mkkernel_pool=.
            if spec.memory_bytes > region.size:
                raise KernelError(
                    errno.ERANGE,
                    f"baseline {spec.memory_bytes:#x} bytes exceeds the boot pool ({region.size:#x})",
                )
            if spec.memory_base < region.start or spec.memory_base + spec.memory_bytes > region.end + 1:
                raise KernelError(
                    errno.EINVAL,
                    f"baseline memory lies outside the boot pool {region.start:#x}-{region.end:#x} (mkkernel_pool=)",
                )
        used = {cpu for instance in instances for cpu in instance.cpus}
        # The v2 kernel ignores /resources and skips existing names, so writing the root tree
        # with no instances records the baseline without touching any instance (spec 5.2).
        self.fs.write_root_tree(
            build_root_tree(
                "rfc-v2",
                spec,
                chunks=[MemChunk(base=spec.memory_base, bytes=spec.memory_bytes)],
                free_cpus=[cpu for cpu in spec.cpus if cpu not in used],
            )
        )

    def write_v2_instances(self, specs: Sequence[InstanceSpec], instances: Sequence[KernelInstance]) -> None:
        """rfc-v2 instance creation: the root tree with the new instances (spec 5.2)."""
        pool = self._read_v2(instances)
        self.fs.write_root_tree(
            build_root_tree("rfc-v2", pool.spec, chunks=pool.chunks, free_cpus=pool.free_cpus, instances=specs)
        )


def _used_memory(instances: Sequence[Holding]) -> int:
    return sum(instance.memory_bytes for instance in instances)


def _free_devices(devices: Sequence[str], instances: Sequence[Holding]) -> tuple[str, ...]:
    lent = {device for instance in instances for device in instance.devices}
    return tuple(device for device in devices if device not in lent)

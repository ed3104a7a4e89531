"""Who owns what: the pool, the free resources and every instance's holding, with O(1) lookups."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mkd.domain.allocation.llc_ways import format_mask, way_indexes
from mkd.domain.allocation.names import lowest_clear_id
from mkd.kernel_types import CpuInfo, InstanceSpec, PoolSpec, Topology

LlcKey = tuple[int, int]  # (numa node, llc)


@dataclass
class Holding:
    """What one existing instance holds."""

    id: int
    name: str
    cpus: tuple[int, ...]
    memory_bytes: int
    llc_way_mask: int | None
    devices: tuple[str, ...]
    numa_memory: dict[int, int] = field(default_factory=dict)  # bytes per NUMA node, when known

    @classmethod
    def from_spec(cls, spec: InstanceSpec, numa_memory: dict[int, int] | None = None) -> Holding:
        return cls(
            id=spec.id,
            name=spec.name,
            cpus=spec.cpus,
            memory_bytes=spec.memory_bytes,
            llc_way_mask=spec.llc_way_mask,
            devices=spec.devices,
            numa_memory=dict(numa_memory or {}),
        )

    def label(self) -> str:
        """How messages name the instance: "instance 2 (web)"."""
        return f"instance {self.id} ({self.name})"


class Ledger:
    """Who owns what, built from topology + baseline + existing holdings.

    Every lookup is a dict or set access and every update touches only the resources of the
    one holding, so validating the 1,000th create costs the same as the 10th.
    `free_memory_bytes` / `free_memory_by_node` are what is free *now*, with `holdings`
    already taken (as the kernel's PoolState reports them); `add`/`remove` adjust them.
    """

    def __init__(
        self,
        topology: Topology,
        pool: PoolSpec | None,
        holdings: Iterable[Holding],
        *,
        free_memory_bytes: int,
        free_memory_by_node: dict[int, int] | None = None,
        max_instance_bytes: int | None = None,
    ) -> None:
        self._topology = topology
        self._pool = pool
        self._max_instance_bytes = max_instance_bytes
        self._cpu_info: dict[int, CpuInfo] = {cpu.id: cpu for cpu in topology.cpus}
        self._known_devices = frozenset(device.name for device in topology.devices)
        pool_cpus = [cpu for cpu in (pool.cpus if pool else ()) if cpu in self._cpu_info]
        self._pool_cpus = frozenset(pool_cpus)
        self._pool_devices = frozenset(pool.devices if pool else ())
        # Static grouping of the pool's CPUs for automatic allocation: node -> its LLCs.
        self._llcs_by_node: dict[int, tuple[int, ...]] = {}
        self._free_by_llc: dict[LlcKey, set[int]] = {}
        for cpu in sorted(self._pool_cpus):
            info = self._cpu_info[cpu]
            self._free_by_llc.setdefault((info.numa_node, info.llc), set()).add(cpu)
        for node, llc in sorted(self._free_by_llc):
            self._llcs_by_node[node] = (*self._llcs_by_node.get(node, ()), llc)
        self._holdings: dict[int, Holding] = {}
        self._ids_by_name: dict[str, int] = {}
        self._cpu_owner: dict[int, int] = {}
        self._way_owner: dict[int, int] = {}
        self._device_owner: dict[str, int] = {}
        self._used_ids = 1  # bit 0: id 0 is the host
        self._used_llc_mask = 0
        self._free_memory = free_memory_bytes
        self._free_by_node = dict(free_memory_by_node) if free_memory_by_node is not None else None
        # A raw kernel can hand the same CPU to two instances (v2); the ledger keeps the first
        # owner and reports the overlap instead of refusing to describe the machine.
        self.overlaps: list[str] = []
        for holding in holdings:
            self._record(holding, strict=False, take_memory=False)

    # -- static facts --------------------------------------------------------------------
    @property
    def topology(self) -> Topology:
        return self._topology

    @property
    def pool(self) -> PoolSpec | None:
        return self._pool

    @property
    def max_instance_bytes(self) -> int | None:
        return self._max_instance_bytes

    @property
    def pool_llc_mask(self) -> int | None:
        return self._pool.llc_way_mask if self._pool else None

    def cpu_info(self, cpu: int) -> CpuInfo | None:
        return self._cpu_info.get(cpu)

    def cpu_in_pool(self, cpu: int) -> bool:
        return cpu in self._pool_cpus

    def device_known(self, name: str) -> bool:
        return name in self._known_devices

    def device_in_pool(self, name: str) -> bool:
        return name in self._pool_devices

    def llcs_by_node(self) -> dict[int, tuple[int, ...]]:
        """The pool's CPUs grouped by node: node -> its LLC ids, both ascending."""
        return dict(self._llcs_by_node)

    # -- who owns what -------------------------------------------------------------------
    def holding(self, instance_id: int) -> Holding | None:
        return self._holdings.get(instance_id)

    def holding_named(self, name: str) -> Holding | None:
        instance_id = self._ids_by_name.get(name)
        return None if instance_id is None else self._holdings[instance_id]

    def holdings(self) -> Iterator[Holding]:
        """Every holding (O(instances); for pool changes and reports, not for plans)."""
        return iter(list(self._holdings.values()))

    def __len__(self) -> int:
        return len(self._holdings)

    def cpu_owner(self, cpu: int) -> Holding | None:
        owner = self._cpu_owner.get(cpu)
        return None if owner is None else self._holdings[owner]

    def way_owner(self, way: int) -> Holding | None:
        owner = self._way_owner.get(way)
        return None if owner is None else self._holdings[owner]

    def device_owner(self, name: str) -> Holding | None:
        owner = self._device_owner.get(name)
        return None if owner is None else self._holdings[owner]

    @property
    def used_ids_mask(self) -> int:
        """Bit i set: id i is taken (bit 0, the host, always)."""
        return self._used_ids

    @property
    def used_ids(self) -> frozenset[int]:
        return frozenset(self._holdings)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._ids_by_name)

    def lowest_free_id(self) -> int:
        return lowest_clear_id(self._used_ids)

    # -- what is free --------------------------------------------------------------------
    def free_cpus_in(self, key: LlcKey) -> frozenset[int]:
        return frozenset(self._free_by_llc.get(key, ()))

    @property
    def free_cpus(self) -> frozenset[int]:
        return frozenset(cpu for free in self._free_by_llc.values() for cpu in free)

    @property
    def free_llc_mask(self) -> int | None:
        mask = self.pool_llc_mask
        return None if mask is None else mask & ~self._used_llc_mask

    @property
    def used_llc_mask(self) -> int:
        return self._used_llc_mask

    @property
    def free_devices(self) -> frozenset[str]:
        return self._pool_devices - self._device_owner.keys()

    @property
    def free_memory_bytes(self) -> int:
        return self._free_memory

    @property
    def free_memory_by_node(self) -> dict[int, int] | None:
        return None if self._free_by_node is None else dict(self._free_by_node)

    def free_memory_on(self, node: int) -> int | None:
        """Free bytes on `node`, or None when per-node memory is unknown."""
        if self._free_by_node is None:
            return None
        return self._free_by_node.get(node, 0)

    # -- changes -------------------------------------------------------------------------
    def add(self, holding: Holding) -> None:
        """Record a new instance; a clash is a bug in the caller (plans check first)."""
        self._record(holding, strict=True, take_memory=True)

    def remove(self, instance_id: int) -> Holding:
        holding = self._holdings.pop(instance_id)
        del self._ids_by_name[holding.name]
        self._used_ids &= ~(1 << instance_id)
        for cpu in holding.cpus:
            if self._cpu_owner.get(cpu) == instance_id:
                del self._cpu_owner[cpu]
                if cpu in self._pool_cpus:
                    info = self._cpu_info[cpu]
                    self._free_by_llc[(info.numa_node, info.llc)].add(cpu)
        for way in way_indexes(holding.llc_way_mask or 0):
            if self._way_owner.get(way) == instance_id:
                del self._way_owner[way]
                self._used_llc_mask &= ~(1 << way)
        for device in holding.devices:
            if self._device_owner.get(device) == instance_id:
                del self._device_owner[device]
        self._free_memory += holding.memory_bytes
        if self._free_by_node is not None:
            for node, size in holding.numa_memory.items():
                self._free_by_node[node] = self._free_by_node.get(node, 0) + size
        return holding

    def _record(self, holding: Holding, *, strict: bool, take_memory: bool) -> None:
        if holding.id in self._holdings or holding.name in self._ids_by_name:
            raise ValueError(f"{holding.label()} clashes with an existing id or name")
        clashes = self._clashes(holding)
        if clashes and strict:
            raise ValueError(f"{holding.label()}: {'; '.join(clashes)}")
        self.overlaps.extend(clashes)
        self._holdings[holding.id] = holding
        self._ids_by_name[holding.name] = holding.id
        self._used_ids |= 1 << holding.id
        for cpu in holding.cpus:
            if cpu in self._cpu_owner:
                continue
            self._cpu_owner[cpu] = holding.id
            info = self._cpu_info.get(cpu)
            if info is not None:
                self._free_by_llc.get((info.numa_node, info.llc), set()).discard(cpu)
        for way in way_indexes(holding.llc_way_mask or 0):
            self._way_owner.setdefault(way, holding.id)
            self._used_llc_mask |= 1 << way
        for device in holding.devices:
            self._device_owner.setdefault(device, holding.id)
        if not take_memory:
            return  # the free figures given to the constructor already exclude it
        self._free_memory -= holding.memory_bytes
        if self._free_by_node is not None:
            for node, size in holding.numa_memory.items():
                self._free_by_node[node] = self._free_by_node.get(node, 0) - size

    def _clashes(self, holding: Holding) -> list[str]:
        clashes = [
            f"cpu {cpu} is also held by instance {self._cpu_owner[cpu]}"
            for cpu in holding.cpus
            if cpu in self._cpu_owner
        ]
        shared_ways = (holding.llc_way_mask or 0) & self._used_llc_mask
        if shared_ways:
            clashes.append(f"llc ways {format_mask(shared_ways)} are also held")
        clashes.extend(
            f"device {device} is also held by instance {self._device_owner[device]}"
            for device in holding.devices
            if device in self._device_owner
        )
        return clashes

    def copy(self) -> Ledger:
        """An independent ledger with the same state (O(instances); plans don't need it)."""
        clone = Ledger.__new__(Ledger)
        clone.__dict__.update(self.__dict__)
        clone._free_by_llc = {key: set(cpus) for key, cpus in self._free_by_llc.items()}
        clone._llcs_by_node = dict(self._llcs_by_node)
        clone._holdings = dict(self._holdings)
        clone._ids_by_name = dict(self._ids_by_name)
        clone._cpu_owner = dict(self._cpu_owner)
        clone._way_owner = dict(self._way_owner)
        clone._device_owner = dict(self._device_owner)
        clone._free_by_node = None if self._free_by_node is None else dict(self._free_by_node)
        clone.overlaps = list(self.overlaps)
        return clone

    def _state(self) -> tuple[Any, ...]:
        return (
            self._topology,
            self._pool,
            self._holdings,
            self._ids_by_name,
            self._cpu_owner,
            self._way_owner,
            self._device_owner,
            self._free_by_llc,
            self._used_ids,
            self._used_llc_mask,
            self._free_memory,
            self._free_by_node,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ledger):
            return NotImplemented
        return self._state() == other._state()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Ledger(instances={len(self._holdings)}, free_cpus={len(self.free_cpus)}, "
            f"free_memory_bytes={self._free_memory})"
        )

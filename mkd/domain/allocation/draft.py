"""A plan's tentative view of a ledger: the ledger plus the plan's instances, minus a released one.

Plans validate against this overlay instead of a copy of the ledger, so checking one request
costs O(request) whatever the number of existing instances, and the ledger is never touched.
"""

from __future__ import annotations

from mkd.domain.allocation.ledger import Holding, Ledger, LlcKey
from mkd.domain.allocation.llc_ways import way_indexes
from mkd.domain.allocation.names import lowest_clear_id


class Draft:
    def __init__(self, base: Ledger, *, released: Holding | None = None) -> None:
        """`released`: an existing holding whose resources count as free (a resource update)."""
        self.base = base
        self._released = released
        self._released_cpus: dict[LlcKey, set[int]] = {}
        if released is not None:
            for cpu in released.cpus:
                info = base.cpu_info(cpu)
                if info is not None and base.cpu_in_pool(cpu) and self._is_released(base.cpu_owner(cpu)):
                    self._released_cpus.setdefault((info.numa_node, info.llc), set()).add(cpu)
        self.added: list[Holding] = []
        self._by_id: dict[int, Holding] = {}
        self._by_name: dict[str, Holding] = {}
        self._cpu_owner: dict[int, Holding] = {}
        self._taken_cpus: dict[LlcKey, set[int]] = {}
        self._way_owner: dict[int, Holding] = {}
        self._device_owner: dict[str, Holding] = {}
        self._used_ids = 0
        self._used_llc_mask = 0
        self._taken_memory = 0
        self._taken_by_node: dict[int, int] = {}

    def _is_released(self, holding: Holding | None) -> bool:
        return holding is not None and self._released is not None and holding.id == self._released.id

    # -- names and ids -------------------------------------------------------------------
    def holding(self, instance_id: int) -> Holding | None:
        return self._by_id.get(instance_id) or self.base.holding(instance_id)

    def holding_named(self, name: str) -> Holding | None:
        return self._by_name.get(name) or self.base.holding_named(name)

    def lowest_free_id(self) -> int:
        return lowest_clear_id(self.base.used_ids_mask | self._used_ids)

    # -- CPUs ----------------------------------------------------------------------------
    def cpu_owner(self, cpu: int) -> Holding | None:
        if cpu in self._cpu_owner:
            return self._cpu_owner[cpu]
        owner = self.base.cpu_owner(cpu)
        return None if self._is_released(owner) else owner

    def free_cpus_in(self, key: LlcKey) -> set[int]:
        free = set(self.base.free_cpus_in(key))
        free |= self._released_cpus.get(key, set())
        free -= self._taken_cpus.get(key, set())
        return free

    # -- LLC ways ------------------------------------------------------------------------
    def way_owner(self, way: int) -> Holding | None:
        if way in self._way_owner:
            return self._way_owner[way]
        owner = self.base.way_owner(way)
        return None if self._is_released(owner) else owner

    def free_llc_mask(self) -> int:
        pool_mask = self.base.pool_llc_mask or 0
        used = self.base.used_llc_mask
        if self._released is not None:
            released_ways = self._released.llc_way_mask or 0
            # Only the ways the ledger really attributes to the released instance come back.
            for way in way_indexes(released_ways):
                if self._is_released(self.base.way_owner(way)):
                    used &= ~(1 << way)
        return pool_mask & ~(used | self._used_llc_mask)

    # -- devices -------------------------------------------------------------------------
    def device_owner(self, name: str) -> Holding | None:
        if name in self._device_owner:
            return self._device_owner[name]
        owner = self.base.device_owner(name)
        return None if self._is_released(owner) else owner

    # -- memory --------------------------------------------------------------------------
    def _released_memory(self) -> int:
        return self._released.memory_bytes if self._released is not None else 0

    def free_memory_bytes(self) -> int:
        return self.base.free_memory_bytes + self._released_memory() - self._taken_memory

    def free_memory_on(self, node: int) -> int | None:
        base_free = self.base.free_memory_on(node)
        if base_free is None:
            return None
        released = self._released.numa_memory.get(node, 0) if self._released is not None else 0
        return base_free + released - self._taken_by_node.get(node, 0)

    def memory_nodes(self) -> tuple[int, ...] | None:
        """Nodes with per-node memory accounting, or None when it is unknown."""
        by_node = self.base.free_memory_by_node
        if by_node is None:
            return None
        return tuple(sorted(set(by_node) | set(range(self.base.topology.numa_nodes))))

    # -- changes -------------------------------------------------------------------------
    def add(self, holding: Holding) -> None:
        """Take a validated holding's resources so later requests of the plan see them."""
        self.added.append(holding)
        self._by_id[holding.id] = holding
        self._by_name[holding.name] = holding
        self._used_ids |= 1 << holding.id
        for cpu in holding.cpus:
            self._cpu_owner[cpu] = holding
            info = self.base.cpu_info(cpu)
            if info is not None:
                self._taken_cpus.setdefault((info.numa_node, info.llc), set()).add(cpu)
        for way in way_indexes(holding.llc_way_mask or 0):
            self._way_owner[way] = holding
            self._used_llc_mask |= 1 << way
        for device in holding.devices:
            self._device_owner[device] = holding
        self._taken_memory += holding.memory_bytes
        for node, size in holding.numa_memory.items():
            self._taken_by_node[node] = self._taken_by_node.get(node, 0) + size

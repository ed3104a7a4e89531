from __future__ import annotations

from mkd.backends.simulated.machine import build_topology, memory_numa_node, node_memory_ranges
from mkd.config import SimulatorSettings


def test_cpus_split_evenly_over_nodes_and_llcs() -> None:
    topo = build_topology(SimulatorSettings(cpus=8, numa_nodes=2, llc_per_node=2, llc_ways=11))
    assert [c.id for c in topo.cpus] == list(range(8))
    assert all(c.id == c.logical_id for c in topo.cpus)
    assert [c.numa_node for c in topo.cpus] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [c.llc for c in topo.cpus] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert topo.llc_way_mask == 0x7FF
    assert topo.numa_nodes == 2


def test_devices_memory_and_pool_range() -> None:
    settings = SimulatorSettings(
        devices=["0000:3b:00.1", "serial0"], memory_bytes=8 << 30, pool_base=1 << 32, pool_bytes=1 << 30
    )
    topo = build_topology(settings)
    assert [(d.name, d.type) for d in topo.devices] == [("0000:3b:00.1", "pci"), ("serial0", "platform")]
    assert (topo.memory_bytes, topo.pool_base, topo.pool_bytes) == (8 << 30, 1 << 32, 1 << 30)
    assert memory_numa_node(3 << 30, settings) == 0
    assert memory_numa_node(6 << 30, settings) == 1
    assert node_memory_ranges(settings) == [(0, 4 << 30), (4 << 30, 8 << 30)]

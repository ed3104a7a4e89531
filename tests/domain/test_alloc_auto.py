"""Automatic allocation: compact vs spread CPUs, LLC way runs, NUMA memory, "what is short"."""

from __future__ import annotations

import random

import pytest
from alloc_topologies import GiB, MiB, holding, make_ledger, make_pool, make_topology, request

from mkd.domain.allocation import Ledger, plan_instance_holdings, plan_instances
from mkd.domain.requests import InstanceRequest
from mkd.errors import KernelError


def one(ledger: Ledger, instance_request: InstanceRequest) -> tuple[int, ...]:
    (spec,) = plan_instances(ledger, [instance_request], u32_memory=False)
    return spec.cpus


def refusal(ledger: Ledger, instance_request: InstanceRequest) -> KernelError:
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, [instance_request], u32_memory=False)
    return caught.value


@pytest.fixture
def small() -> Ledger:
    """16 CPUs, 2 nodes of 8, one LLC each; CPU 0 stays with the host, so node 0 has 7 free."""
    topology = make_topology(nodes=2, cpus_per_llc=8)
    return make_ledger(topology, make_pool(topology), per_node_memory=True)


@pytest.fixture
def large() -> Ledger:
    """1,024 CPUs, 4 nodes of 256, two LLCs of 128 per node; CPU 0 stays with the host."""
    topology = make_topology(nodes=4, llcs_per_node=2, cpus_per_llc=128)
    return make_ledger(topology, make_pool(topology, memory_bytes=64 * GiB), per_node_memory=True)


def test_compact_fits_one_node_with_most_free(small: Ledger) -> None:
    (spec,) = plan_instances(small, [request("a", cpu_count=4)], u32_memory=False)
    assert spec.cpus == (8, 9, 10, 11)
    assert spec.numa_node == 1  # local policy, one node


def test_compact_overflows_to_the_next_node(small: Ledger) -> None:
    assert one(small, request("a", cpu_count=10)) == (8, 9, 10, 11, 12, 13, 14, 15, 1, 2)


def test_spread_round_robins_over_nodes(small: Ledger) -> None:
    (spec,) = plan_instances(small, [request("a", cpu_count=5, cpu_affinity="spread")], u32_memory=False)
    assert spec.cpus == (1, 8, 2, 9, 3)
    assert spec.numa_node is None  # two nodes


def test_numa_nodes_restrict_candidates(small: Ledger) -> None:
    assert one(small, request("a", cpu_count=3, numa_nodes=(0,))) == (1, 2, 3)
    assert one(small, request("a", cpu_count=3, numa_nodes=(0,), cpu_affinity="spread")) == (1, 2, 3)


def test_compact_ties_go_to_lowest_node_and_fullest_llc() -> None:
    topology = make_topology(nodes=2, llcs_per_node=2, cpus_per_llc=4)
    ledger = make_ledger(topology, make_pool(topology), [holding(1, "x", (12,))])
    # Both nodes have 7 free -> node 0; there LLC 1 (4 free) beats LLC 0 (3 free).
    assert one(ledger, request("a", cpu_count=3)) == (4, 5, 6)
    # Six needs LLC 1 whole, then the fuller remaining LLC of node 0.
    assert one(ledger, request("a", cpu_count=6)) == (4, 5, 6, 7, 1, 2)


def test_cpus_short_messages(small: Ledger) -> None:
    on_node = refusal(small, request("a", cpu_count=8, numa_nodes=(0,)))
    assert (on_node.errno, on_node.detail) == ("EBUSY", "need 8 CPUs on node 0, 7 free")
    in_pool = refusal(small, request("a", cpu_count=16))
    assert (in_pool.errno, in_pool.detail) == ("EBUSY", "need 16 CPUs in the pool, 15 free")
    on_nodes = refusal(small, request("a", cpu_count=16, numa_nodes=(1, 0)))
    assert on_nodes.detail == "need 16 CPUs on nodes 1, 0, 15 free"


def test_cpu_count_below_one_is_einval(small: Ledger) -> None:
    error = refusal(small, request("a", cpu_count=0))
    assert error.errno == "EINVAL"
    assert "cpu_count 0" in error.detail


def test_large_compact_prefers_one_node_and_one_llc(large: Ledger) -> None:
    (spec,) = plan_instances(large, [request("a", cpu_count=100)], u32_memory=False)
    assert spec.cpus == tuple(range(256, 356))  # node 1 (node 0 lost CPU 0), its first LLC
    assert spec.numa_node == 1
    assert one(large, request("a", cpu_count=200)) == tuple(range(256, 456))


def test_large_compact_spills_to_the_fullest_next_node(large: Ledger) -> None:
    cpus = one(large, request("a", cpu_count=300))
    assert cpus == tuple(range(256, 512)) + tuple(range(512, 556))


def test_large_spread(large: Ledger) -> None:
    cpus = one(large, request("a", cpu_count=8, cpu_affinity="spread"))
    assert cpus == (1, 256, 512, 768, 2, 257, 513, 769)
    cpus = one(large, request("a", cpu_count=4, cpu_affinity="spread", numa_nodes=(3, 1)))
    assert cpus == (256, 768, 257, 769)


def test_later_instances_of_a_plan_see_earlier_ones(large: Ledger) -> None:
    specs = plan_instances(large, [request(f"i{n}", cpu_count=256) for n in range(3)], u32_memory=False)
    assert [spec.cpus[0] for spec in specs] == [256, 512, 768]
    assert [spec.id for spec in specs] == [1, 2, 3]


def test_allocation_is_deterministic_whatever_the_holding_order() -> None:
    topology = make_topology(nodes=4, llcs_per_node=2, cpus_per_llc=16)
    held = [holding(n + 1, f"h{n}", (n * 5 + 1, n * 5 + 2), llc_way_mask=1 << n) for n in range(10)]
    results = set()
    for seed in range(5):
        shuffled = held[:]
        random.Random(seed).shuffle(shuffled)
        ledger = make_ledger(topology, make_pool(topology), shuffled)
        plan = [
            request("a", cpu_count=20, llc_ways=2),
            request("b", cpu_count=7, cpu_affinity="spread"),
        ]
        results.add(tuple(plan_instances(ledger, plan, u32_memory=False)))
    assert len(results) == 1


def test_llc_ways_take_lowest_contiguous_free_run() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), [holding(2, "web", llc_way_mask=0x00C)])
    (spec,) = plan_instances(ledger, [request("a", llc_ways=2)], u32_memory=False)
    assert spec.llc_way_mask == 0x3
    (spec,) = plan_instances(ledger, [request("a", llc_ways=3)], u32_memory=False)
    assert spec.llc_way_mask == 0x70
    error = refusal(ledger, request("a", llc_ways=9))
    assert (error.errno, error.detail) == ("EBUSY", "need 9 contiguous LLC ways, largest free run is 8")


def test_llc_ways_respect_a_non_contiguous_pool_mask() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology, llc_way_mask=0b1110_0111))
    (spec,) = plan_instances(ledger, [request("a", llc_ways=3)], u32_memory=False)
    assert spec.llc_way_mask == 0b111
    specs = plan_instances(ledger, [request("a", llc_ways=3), request("b", llc_ways=3)], u32_memory=False)
    assert [s.llc_way_mask for s in specs] == [0b111, 0b1110_0000]


def test_local_memory_comes_from_the_cpus_node(small: Ledger) -> None:
    (planned,) = plan_instance_holdings(
        small, [request("a", cpu_count=2, memory_bytes=1 * GiB, memory_policy="local")], u32_memory=False
    )
    assert planned.holding.numa_memory == {1: 1 * GiB}
    assert planned.spec.numa_node == 1
    error = refusal(small, request("a", cpu_count=2, memory_bytes=3 * GiB, memory_policy="local"))
    assert (error.errno, error.detail) == ("ENOMEM", "need 3 GiB on node 1, 2 GiB free")


def test_prefer_local_takes_the_cpus_node_when_it_has_room(small: Ledger) -> None:
    (planned,) = plan_instance_holdings(small, [request("a", cpu_count=2, memory_bytes=1 * GiB)], u32_memory=False)
    assert planned.holding.numa_memory == {1: 1 * GiB}
    assert planned.spec.numa_node == 1  # the kernel is told to carve there


def test_prefer_local_falls_back_to_any_node(small: Ledger) -> None:
    """Spec 5.5: with no node named the kernel carves from any node, so the default policy does not
    refuse what the kernel would accept (3 GiB does not fit node 1's 2 GiB, but the pool's 4 GiB)."""
    (planned,) = plan_instance_holdings(small, [request("a", cpu_count=2, memory_bytes=3 * GiB)], u32_memory=False)
    assert planned.spec.cpus == (8, 9)
    assert sum(planned.holding.numa_memory.values()) == 3 * GiB
    assert planned.spec.numa_node is None  # any node


def test_explicit_numa_nodes_insist_under_prefer_local(small: Ledger) -> None:
    error = refusal(small, request("a", cpu_count=2, numa_nodes=(1,), memory_bytes=3 * GiB))
    assert (error.errno, error.detail) == ("ENOMEM", "need 3 GiB on node 1, 2 GiB free")


def test_local_memory_over_several_cpu_nodes_is_split(small: Ledger) -> None:
    plan = [request("a", cpu_count=2, cpu_affinity="spread", memory_bytes=1 * GiB + 4096)]
    (planned,) = plan_instance_holdings(small, plan, u32_memory=False)
    assert planned.holding.numa_memory == {0: 512 * MiB + 4096, 1: 512 * MiB}


def test_interleave_splits_evenly_over_the_cpus_nodes(small: Ledger) -> None:
    plan = [request("a", cpu_count=2, cpu_affinity="spread", memory_bytes=3 * GiB, memory_policy="interleave")]
    (planned,) = plan_instance_holdings(small, plan, u32_memory=False)
    assert planned.holding.numa_memory == {0: 1536 * MiB, 1: 1536 * MiB}
    assert planned.spec.numa_node is None
    # CPUs on one node: DESIGN "Shapes" spreads over the CPUs' nodes, here that one node.
    plan = [request("a", cpu_count=2, memory_bytes=1 * GiB, memory_policy="interleave")]
    (planned,) = plan_instance_holdings(small, plan, u32_memory=False)
    assert planned.holding.numa_memory == {1: 1 * GiB}


def test_later_requests_see_per_node_memory_taken(small: Ledger) -> None:
    plan = [
        request("a", cpu_count=1, numa_nodes=(0,), memory_bytes=1536 * MiB),
        request("b", cpu_count=1, numa_nodes=(0,), memory_bytes=1 * GiB),
    ]
    error = refusal_plan(small, plan)
    assert error.errno == "ENOMEM"
    assert error.detail == "instance 'b': need 1 GiB on node 0, 512 MiB free"


def refusal_plan(ledger: Ledger, plan: list[InstanceRequest]) -> KernelError:
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, plan, u32_memory=False)
    return caught.value


def test_memory_only_instance_with_one_numa_node_is_placed_there(small: Ledger) -> None:
    (planned,) = plan_instance_holdings(
        small, [request("a", numa_nodes=(0,), memory_bytes=GiB)], u32_memory=False
    )
    assert planned.spec.numa_node == 0
    assert planned.holding.numa_memory == {0: GiB}


def test_memory_without_node_preference_fills_the_freest_node() -> None:
    topology = make_topology()
    ledger = make_ledger(
        topology,
        make_pool(topology),
        [holding(1, "x", memory_bytes=GiB, numa_memory={1: GiB})],
        per_node_memory=True,
    )
    (planned,) = plan_instance_holdings(ledger, [request("a", memory_bytes=2 * GiB + 4096)], u32_memory=False)
    assert planned.holding.numa_memory == {0: 2 * GiB, 1: 4096}

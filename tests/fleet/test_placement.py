"""The pure placement function: fit by CPUs and NUMA memory, matching, strategies, determinism."""

from __future__ import annotations

import random

from mkd.fleet.placement import Booking, Choice, Demand, NodeView, NoFit, place

GIB = 1 << 30


def node(name: str, cpus: int = 8, memory: dict[int, int] | None = None, **extra: object) -> NodeView:
    return NodeView(name=name, cpus=cpus, memory=memory or {0: 4 * GIB, 1: 4 * GIB}, **extra)  # type: ignore[arg-type]


def test_demand_of_a_spec() -> None:
    demand = Demand.of({"resources": {"cpus": [4, 5, 6], "memory_bytes": GIB, "numa_nodes": [1]},
                        "node": "a", "nodeSelector": {"rack": "r1"}, "reschedule": "OnNodeLoss"})
    assert demand == Demand(3, GIB, (1,), "a", {"rack": "r1"}, True)
    assert Demand.of({"resources": {"cpu_count": 2, "memory_bytes": 5}}).cpus == 2


def test_most_allocated_packs_and_spread_spreads() -> None:
    nodes = [node("a"), node("b")]
    bookings = {"a": {"x": Booking(4, 0, GIB)}}
    demand = Demand(cpus=2, memory_bytes=GIB)
    packed = place(demand, nodes, bookings, "most-allocated")
    spread = place(demand, nodes, bookings, "spread")
    assert isinstance(packed, Choice) and packed.node == "a" and packed.booking.numa == 0  # the fuller NUMA node
    assert isinstance(spread, Choice) and spread.node == "b"


def test_cpus_and_numa_memory_must_fit() -> None:
    nodes = [node("a", cpus=4, memory={0: GIB, 1: 3 * GIB})]
    assert isinstance(place(Demand(5, GIB), nodes, {}, "spread"), NoFit)
    big = place(Demand(1, 2 * GIB), nodes, {}, "most-allocated")
    assert isinstance(big, Choice) and big.booking.numa == 1  # only node 1 holds 2 GiB in one piece
    refused = place(Demand(1, 2 * GIB, numa_nodes=(0,)), nodes, {}, "spread")
    assert isinstance(refused, NoFit) and "bytes free on one NUMA node" in refused.reason
    booked_full = place(Demand(1, GIB), nodes, {"a": {"x": Booking(4, 1, GIB)}}, "spread")
    assert isinstance(booked_full, NoFit) and "0 CPUs free, 1 needed" in booked_full.reason


def test_node_selector_cordon_and_halt() -> None:
    nodes = [node("a", labels={"rack": "r1"}), node("b", labels={"rack": "r2"}, cordoned=True),
             node("c", labels={"rack": "r2"}, capabilities={"halt": False})]
    chosen = place(Demand(1, GIB, selector={"rack": "r1"}), nodes, {}, "spread")
    assert isinstance(chosen, Choice) and chosen.node == "a"
    nothing = place(Demand(1, GIB, selector={"rack": "r2"}, needs_halt=True), nodes, {}, "spread")
    assert isinstance(nothing, NoFit)
    assert "b: cordoned" in nothing.reason and "c: kernel cannot halt" in nothing.reason
    named = place(Demand(1, GIB, node="zz"), nodes, {}, "spread")
    assert isinstance(named, NoFit) and "spec.node 'zz' is not a live node" in named.reason
    assert place(Demand(1, GIB), [], {}, "spread") == NoFit("no live node")


def test_the_same_inputs_give_the_same_answer_in_any_order() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i}", cpus=rng.randint(4, 32)) for i in range(12)]
    bookings = {n.name: {"x": Booking(rng.randint(0, 3), rng.randint(0, 1), rng.randint(0, GIB))} for n in nodes}
    for strategy in ("most-allocated", "spread"):
        demand = Demand(2, GIB // 2)
        first = place(demand, nodes, bookings, strategy)  # type: ignore[arg-type]
        for _ in range(5):
            shuffled = nodes[:]
            rng.shuffle(shuffled)
            assert place(demand, shuffled, bookings, strategy) == first  # type: ignore[arg-type]

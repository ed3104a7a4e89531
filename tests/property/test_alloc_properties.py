"""Property tests: over random allocate/free sequences on random topologies nothing is ever held
twice, accounting always balances, refusals change nothing, and freeing gives back exactly."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mkd.domain.allocation import Ledger, plan_instance_holdings
from mkd.domain.allocation.llc_ways import way_indexes
from mkd.domain.requests import InstanceRequest, ResourceRequest
from mkd.errors import KernelError
from mkd.kernel_types import PoolSpec, Topology
from tests.domain.alloc_topologies import MiB, make_ledger, make_topology

DEVICES = ("0000:03:00.0", "0000:04:00.0", "serial0", "serial1")


@st.composite
def machines(draw: st.DrawFn) -> tuple[Topology, PoolSpec, bool]:
    nodes = draw(st.integers(1, 3))
    topology = make_topology(
        nodes=nodes,
        llcs_per_node=draw(st.integers(1, 2)),
        cpus_per_llc=draw(st.integers(1, 6)),
        llc_way_mask=(1 << draw(st.integers(4, 12))) - 1,
        devices=DEVICES,
    )
    all_cpus = [cpu.id for cpu in topology.cpus]
    pool_cpus = draw(st.lists(st.sampled_from(all_cpus), unique=True, min_size=1))
    pool_mask = draw(st.one_of(st.none(), st.integers(1, topology.llc_way_mask)))
    pool = PoolSpec(
        cpus=tuple(sorted(pool_cpus)),
        memory_base=0x1_0000_0000,
        memory_bytes=nodes * draw(st.integers(1, 64)) * MiB,
        llc_way_mask=pool_mask,
        devices=tuple(draw(st.lists(st.sampled_from(DEVICES), unique=True))),
    )
    return topology, pool, draw(st.booleans())


def draw_request(data: st.DataObject, topology: Topology, serial: int) -> InstanceRequest:
    all_cpus = [cpu.id for cpu in topology.cpus]
    explicit = data.draw(st.booleans())
    resources: dict[str, Any] = {
        "memory_bytes": data.draw(st.integers(0, 48)) * MiB,
        "memory_policy": data.draw(st.sampled_from(["prefer-local", "local", "interleave"])),
        "cpu_affinity": data.draw(st.sampled_from(["compact", "spread"])),
        "devices": tuple(data.draw(st.lists(st.sampled_from(DEVICES), unique=True, max_size=2))),
    }
    if explicit:
        resources["cpus"] = tuple(data.draw(st.lists(st.sampled_from(all_cpus), unique=True, max_size=4)))
        if data.draw(st.booleans()):
            resources["llc_way_mask"] = data.draw(st.integers(1, topology.llc_way_mask))
    else:
        resources["cpu_count"] = data.draw(st.one_of(st.none(), st.integers(1, 5)))
        resources["llc_ways"] = data.draw(st.one_of(st.none(), st.integers(1, 4)))
    if data.draw(st.booleans()):
        resources["numa_nodes"] = tuple(
            data.draw(st.lists(st.integers(0, topology.numa_nodes - 1), unique=True, min_size=1))
        )
    return InstanceRequest(name=f"i{serial}", id=None, resources=ResourceRequest(**resources))


def assert_consistent(ledger: Ledger, pool: PoolSpec, initial: Ledger) -> None:
    held = list(ledger.holdings())
    cpus = [cpu for holding in held for cpu in holding.cpus]
    assert len(cpus) == len(set(cpus)), "a CPU is held twice"
    assert set(cpus) <= set(pool.cpus)
    assert ledger.free_cpus == frozenset(pool.cpus) - set(cpus)
    ways = [way for holding in held for way in way_indexes(holding.llc_way_mask or 0)]
    assert len(ways) == len(set(ways)), "an LLC way is held twice"
    used_mask = sum(1 << way for way in ways)
    assert used_mask & ~(pool.llc_way_mask or 0) == 0
    if pool.llc_way_mask is not None:
        assert ledger.free_llc_mask == pool.llc_way_mask & ~used_mask
    devices = [device for holding in held for device in holding.devices]
    assert len(devices) == len(set(devices)), "a device is held twice"
    assert ledger.free_devices == frozenset(pool.devices) - set(devices)
    held_memory = sum(holding.memory_bytes for holding in held)
    assert ledger.free_memory_bytes >= 0
    assert ledger.free_memory_bytes + held_memory == pool.memory_bytes, "memory accounting drifted"
    by_node, initial_by_node = ledger.free_memory_by_node, initial.free_memory_by_node
    if by_node is not None and initial_by_node is not None:
        for holding in held:
            assert sum(holding.numa_memory.values()) == holding.memory_bytes
        for node, initial_free in initial_by_node.items():
            node_held = sum(holding.numa_memory.get(node, 0) for holding in held)
            assert by_node[node] >= 0
            assert by_node[node] + node_held == initial_free, f"node {node} accounting drifted"
    assert len({holding.id for holding in held}) == len(held)
    assert all(1 <= holding.id <= 2047 for holding in held)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machine=machines(), data=st.data())
def test_random_allocate_and_free_never_double_books(
    machine: tuple[Topology, PoolSpec, bool], data: st.DataObject
) -> None:
    topology, pool, per_node = machine
    ledger = make_ledger(topology, pool, per_node_memory=per_node)
    initial = ledger.copy()
    serial = 0
    for _ in range(data.draw(st.integers(1, 14), label="steps")):
        live = sorted(ledger.used_ids)
        wants_free: bool = data.draw(st.booleans(), label="free?")
        if live and wants_free:
            victim = data.draw(st.sampled_from(live))
            before_free = ledger.copy()
            taken = ledger.remove(victim)
            ledger.add(taken)
            assert ledger == before_free, "free + re-add is not the identity"
            ledger.remove(victim)
        else:
            plan = []
            for _ in range(data.draw(st.integers(1, 3), label="plan size")):
                serial += 1
                plan.append(draw_request(data, topology, serial))
            before = ledger.copy()
            try:
                planned = plan_instance_holdings(ledger, plan, u32_memory=data.draw(st.booleans()))
            except KernelError as error:
                event(f"plan refused: {error.errno}")
                assert ledger == before, "a refused plan changed the ledger"
                continue
            event("plan accepted")
            assert ledger == before, "planning changed the ledger"
            for item in planned:
                ledger.add(item.holding)
            for item in reversed(planned):
                ledger.remove(item.holding.id)
            assert ledger == before, "freeing did not give back exactly what was taken"
            for item in planned:
                ledger.add(item.holding)
        assert_consistent(ledger, pool, initial)
    for instance_id in sorted(ledger.used_ids):
        ledger.remove(instance_id)
    assert ledger == initial


@settings(max_examples=60, deadline=None)
@given(machine=machines(), data=st.data())
def test_planning_is_deterministic(machine: tuple[Topology, PoolSpec, bool], data: st.DataObject) -> None:
    topology, pool, per_node = machine
    plan = [draw_request(data, topology, serial) for serial in range(3)]
    outcomes = []
    for _ in range(2):
        ledger = make_ledger(topology, pool, per_node_memory=per_node)
        try:
            outcomes.append(repr(plan_instance_holdings(ledger, plan, u32_memory=False)))
        except KernelError as error:
            outcomes.append(f"{error.errno}: {error.detail}")
    assert outcomes[0] == outcomes[1]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machine=machines(), data=st.data())
def test_prefer_local_never_refuses_memory_that_is_free_somewhere(
    machine: tuple[Topology, PoolSpec, bool], data: st.DataObject
) -> None:
    """DESIGN "Shapes": under the default policy a request the kernel would accept (spec 5.5: no
    node named, any node) is never refused for locality alone: ENOMEM only when the pool is short."""
    topology, pool, _ = machine
    ledger = make_ledger(topology, pool, per_node_memory=True)
    # Take memory off some nodes first, so the CPUs' node is often the one without room.
    for serial in range(data.draw(st.integers(0, 2), label="earlier instances")):
        node = data.draw(st.integers(0, topology.numa_nodes - 1))
        free_there = ledger.free_memory_by_node[node] if ledger.free_memory_by_node else 0
        size = data.draw(st.integers(0, free_there // MiB)) * MiB
        if size:
            request = InstanceRequest(name=f"e{serial}", id=None,
                                      resources=ResourceRequest(numa_nodes=(node,), memory_bytes=size))
            for planned in plan_instance_holdings(ledger, [request], u32_memory=False):
                ledger.add(planned.holding)
    free = ledger.free_memory_bytes
    memory = data.draw(st.integers(1, max(free // MiB, 1))) * MiB
    cpus = [cpu for cpu in pool.cpus if cpu not in {c for h in ledger.holdings() for c in h.cpus}]
    wanted = ResourceRequest(cpus=tuple(data.draw(st.lists(st.sampled_from(cpus), unique=True, max_size=3)))
                             if cpus else (), memory_bytes=memory)
    try:
        (planned,) = plan_instance_holdings(ledger, [InstanceRequest("x", None, wanted)], u32_memory=False)
    except KernelError as error:
        assert error.errno != "ENOMEM" or memory > free, error.detail
        return
    assert sum(planned.holding.numa_memory.values()) == memory

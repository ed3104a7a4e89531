"""Whole plans: all or nothing, the ledger never mutated, cost independent of the instance count."""

from __future__ import annotations

import pytest
from alloc_topologies import GiB, MiB, holding, make_ledger, make_pool, make_topology, request

from mkd.domain.allocation import Holding, plan_instance_holdings, plan_instances
from mkd.errors import KernelError


def test_bad_third_instance_refuses_the_whole_plan_and_leaves_the_ledger_untouched() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), [holding(2, "web", (3,), memory_bytes=GiB)])
    before = ledger.copy()
    plan = [
        request("a", cpu_count=2, memory_bytes=256 * MiB, llc_ways=2),
        request("b", cpus=(5,), devices=("serial0",)),
        request("c", cpus=(6, 3)),
    ]
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, plan, u32_memory=False)
    assert caught.value.errno == "EBUSY"
    assert caught.value.detail.startswith("instance 'c': cpu 3 is owned by instance 2 (web)")
    assert ledger == before
    assert ledger.free_cpus == before.free_cpus
    assert ledger.free_memory_bytes == 3 * GiB
    assert ledger.lowest_free_id() == 1


def test_success_does_not_mutate_the_ledger_either() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology))
    before = ledger.copy()
    plan_instances(ledger, [request("a", cpu_count=4, memory_bytes=GiB, llc_ways=4)], u32_memory=False)
    assert ledger == before


def test_an_earlier_instance_of_the_plan_is_named_as_owner() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology))
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, [request("a", 9, cpus=(4,)), request("b", cpus=(4,))], u32_memory=False)
    assert "instance 'b': cpu 4 is owned by instance 9 (a)" in caught.value.detail


def test_applying_planned_holdings_matches_what_the_plan_saw() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), per_node_memory=True)
    planned = plan_instance_holdings(
        ledger, [request("a", cpu_count=3, memory_bytes=GiB), request("b", cpu_count=3)], u32_memory=False
    )
    for item in planned:
        ledger.add(item.holding)
    assert ledger.free_cpus == frozenset(range(1, 16)) - {8, 9, 10, 1, 2, 3}  # b: node 0 now freest
    assert ledger.free_memory_bytes == 3 * GiB
    assert ledger.free_memory_by_node == {0: 2 * GiB, 1: 1 * GiB}
    assert ledger.lowest_free_id() == 3
    assert ledger.holding_named("b") == planned[1].holding


def test_ids_are_lowest_free_and_run_out_with_enospc() -> None:
    topology = make_topology(nodes=1, cpus_per_llc=4)
    held = [holding(n, f"h{n}") for n in range(1, 2048) if n != 1500]
    ledger = make_ledger(topology, make_pool(topology), held)
    assert ledger.lowest_free_id() == 1500
    (spec,) = plan_instances(ledger, [request("new")], u32_memory=False)
    assert spec.id == 1500
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, [request("x"), request("y")], u32_memory=False)
    assert caught.value.errno == "ENOSPC"
    assert "instance 'y': all 2047 instance ids are in use" in caught.value.detail


class _NoScanDict(dict[int, Holding]):
    """A holdings dict that fails any whole-collection walk: plans must only look things up."""

    def _refuse(self, *args: object) -> None:
        raise AssertionError("plan walked every instance")

    __iter__ = _refuse  # type: ignore[assignment]
    values = _refuse  # type: ignore[assignment]
    items = _refuse  # type: ignore[assignment]
    keys = _refuse  # type: ignore[assignment]
    copy = _refuse  # type: ignore[assignment]


def test_planning_against_1000_instances_never_walks_them() -> None:
    topology = make_topology(nodes=4, llcs_per_node=2, cpus_per_llc=128)
    held = [
        holding(n, f"i{n}", (n,), memory_bytes=4 * MiB, devices=("serial0",) if n == 1 else ())
        for n in range(1, 1001)
    ]
    ledger = make_ledger(topology, make_pool(topology, memory_bytes=16 * GiB), held)
    # Structural check: with the per-instance collection unwalkable, planning still works,
    # so the cost of one plan cannot grow with the number of instances.
    ledger._holdings = _NoScanDict(ledger._holdings)  # noqa: SLF001
    specs = plan_instances(
        ledger,
        [
            request("new", cpu_count=8, memory_bytes=GiB, llc_ways=2),
            request("pinned", cpus=(1020, 1021)),
        ],
        u32_memory=False,
    )
    assert specs[0].id == 1001 and specs[1].id == 1002
    assert len(set(specs[0].cpus) & set(range(1, 1001))) == 0
    for refused in (request("dup", cpus=(500,)), request("i7"), request("d", devices=("serial0",))):
        with pytest.raises(KernelError):
            plan_instances(ledger, [refused], u32_memory=False)


def test_ledger_add_refuses_a_clash_and_remove_gives_back() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), [holding(2, "web", (3,), llc_way_mask=0x1)])
    with pytest.raises(ValueError, match="cpu 3 is also held by instance 2"):
        ledger.add(holding(3, "db", (3,)))
    with pytest.raises(ValueError):
        ledger.add(holding(2, "other"))
    removed = ledger.remove(2)
    assert removed.name == "web"
    assert 3 in ledger.free_cpus
    assert ledger.free_llc_mask == 0xFFF


def test_ledger_built_from_a_raw_kernel_that_shared_cpus_reports_the_overlap() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), [holding(1, "a", (3,)), holding(2, "b", (3, 4))])
    assert ledger.overlaps == ["cpu 3 is also held by instance 1"]
    assert ledger.cpu_owner(3) == ledger.holding(1)
    assert ledger.free_cpus == frozenset(range(1, 16)) - {3, 4}

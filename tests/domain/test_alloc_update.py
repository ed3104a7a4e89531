"""Resource updates (PATCH): checked against everyone but the instance itself, diff in kernel order."""

from __future__ import annotations

import pytest
from alloc_topologies import GiB, MiB, holding, make_ledger, make_pool, make_topology

from mkd.domain.allocation import Ledger, ResourceDiff, plan_update
from mkd.domain.allocation.update import plan_update_holding
from mkd.domain.requests import ResourceRequest
from mkd.errors import KernelError


@pytest.fixture
def ledger() -> Ledger:
    topology = make_topology()
    web = holding(2, "web", (3, 4), memory_bytes=GiB, llc_way_mask=0x00C, devices=("serial0",))
    db = holding(3, "db", (5,), llc_way_mask=0x030)
    return make_ledger(topology, make_pool(topology), [web, db])


def same_as_web(**changes: object) -> ResourceRequest:
    fields: dict[str, object] = {
        "cpus": (3, 4),
        "memory_bytes": GiB,
        "llc_way_mask": 0x00C,
        "devices": ("serial0",),
    }
    fields.update(changes)
    return ResourceRequest(**fields)  # type: ignore[arg-type]


def refusal(ledger: Ledger, instance_id: int, request: ResourceRequest) -> KernelError:
    with pytest.raises(KernelError) as caught:
        plan_update(ledger, instance_id, request)
    return caught.value


def test_unchanged_request_gives_an_empty_diff(ledger: Ledger) -> None:
    spec, diff = plan_update(ledger, 2, same_as_web())
    assert (spec.id, spec.name, spec.cpus) == (2, "web", (3, 4))
    assert diff.is_empty()


def test_diff_lists_changes_in_kernel_order(ledger: Ledger) -> None:
    before = ledger.copy()
    spec, diff = plan_update(
        ledger,
        2,
        same_as_web(cpus=(4, 6), memory_bytes=1536 * MiB, llc_way_mask=0x3, devices=("0000:03:00.0",)),
    )
    assert diff == ResourceDiff(
        memory_remove_bytes=0,
        memory_add_bytes=512 * MiB,
        cpu_remove=(3,),
        cpu_add=(6,),
        device_remove=("serial0",),
        device_add=("0000:03:00.0",),
        llc_way_mask=0x3,
    )
    assert list(diff.to_json()) == [
        "memory_remove_bytes",
        "memory_add_bytes",
        "cpu_remove",
        "cpu_add",
        "device_remove",
        "device_add",
        "llc_way_mask",
    ]
    assert spec.cpus == (4, 6)
    assert ledger == before


def test_shrinking_memory_and_dropping_ways(ledger: Ledger) -> None:
    _, diff = plan_update(ledger, 2, same_as_web(memory_bytes=256 * MiB, llc_way_mask=None))
    assert (diff.memory_remove_bytes, diff.memory_add_bytes) == (768 * MiB, 0)
    assert diff.llc_way_mask == 0  # gives its ways up


def test_own_memory_counts_as_free(ledger: Ledger) -> None:
    plan_update(ledger, 2, same_as_web(memory_bytes=4 * GiB))
    error = refusal(ledger, 2, same_as_web(memory_bytes=4 * GiB + 4096))
    assert (error.errno, error.detail) == ("ENOMEM", "need 4194308 KiB, 4 GiB free")


def test_another_instances_cpu_is_ebusy_naming_it(ledger: Ledger) -> None:
    error = refusal(ledger, 2, same_as_web(cpus=(3, 5)))
    assert error.errno == "EBUSY"
    assert "cpu 5 is owned by instance 3 (db); the raw tree kernel would create the instance without it" in (
        error.detail
    )


def test_another_instances_ways_are_ebusy(ledger: Ledger) -> None:
    error = refusal(ledger, 2, same_as_web(llc_way_mask=0x03C))
    assert (error.errno, error.detail) == ("EBUSY", "llc_way_mask 0x3c overlaps instance 3 (db) on ways 0x30")


def test_cpu_count_keeps_current_cpus_first(ledger: Ledger) -> None:
    _, shrink = plan_update(ledger, 2, same_as_web(cpus=None, cpu_count=1))
    assert (shrink.cpu_remove, shrink.cpu_add) == ((4,), ())
    spec, grow = plan_update(ledger, 2, same_as_web(cpus=None, cpu_count=4))
    assert spec.cpus == (3, 4, 1, 2)  # grows on its own node 0 although node 1 has more free
    assert (grow.cpu_remove, grow.cpu_add) == ((), (1, 2))
    _, spill = plan_update(ledger, 2, same_as_web(cpus=None, cpu_count=8))
    assert spill.cpu_add == (8, 9, 10, 11, 12, 13)  # node 0 has only 4 more: compact over the pool


def test_llc_ways_count_keeps_current_mask_when_it_fits(ledger: Ledger) -> None:
    _, same = plan_update(ledger, 2, same_as_web(llc_way_mask=None, llc_ways=2))
    assert same.llc_way_mask is None
    _, other = plan_update(ledger, 2, same_as_web(llc_way_mask=None, llc_ways=4))
    assert other.llc_way_mask == 0xF  # web's own 0xc counts as free, db holds 0x30


def test_unknown_instance_is_enoent(ledger: Ledger) -> None:
    error = refusal(ledger, 9, same_as_web())
    assert (error.errno, error.status) == ("ENOENT", 404)
    assert "instance 9 does not exist" in error.detail


def test_updated_holding_replaces_the_old_one_cleanly(ledger: Ledger) -> None:
    planned = plan_update_holding(ledger, 2, same_as_web(cpus=(6,), memory_bytes=2 * GiB))
    ledger.remove(2)
    ledger.add(planned.holding)
    assert ledger.cpu_owner(6) == planned.holding
    assert 3 in ledger.free_cpus and 4 in ledger.free_cpus
    assert ledger.free_memory_bytes == 2 * GiB

"""A new baseline: hardware checks, rfc-v2 reservation bounds, and never taking what instances hold."""

from __future__ import annotations

from dataclasses import replace

import pytest
from alloc_topologies import POOL_BASE, GiB, MiB, holding, make_pool, make_topology

from mkd.domain.allocation import Holding, PoolDiff, plan_pool_change
from mkd.errors import KernelError
from mkd.kernel_types import KernelProfile, MemChunk, PoolSpec, PoolState

TOPOLOGY = make_topology()
CURRENT = make_pool(TOPOLOGY)
WEB = holding(2, "web", (3, 4), memory_bytes=GiB, llc_way_mask=0x00C, devices=("serial0",))
DB = holding(3, "db", (5,), memory_bytes=512 * MiB)


def change(
    new: PoolSpec,
    *,
    profile: KernelProfile = "tree",
    holdings: tuple[Holding, ...] = (WEB, DB),
    pool_state: PoolState | None = None,
    current: PoolSpec | None = CURRENT,
) -> PoolDiff:
    return plan_pool_change(TOPOLOGY, current, new, holdings, profile=profile, pool_state=pool_state)


def refusal(new: PoolSpec, **options: object) -> KernelError:
    with pytest.raises(KernelError) as caught:
        change(new, **options)  # type: ignore[arg-type]
    return caught.value


def test_same_pool_is_an_empty_diff() -> None:
    diff = change(CURRENT)
    assert diff.is_empty()
    assert diff.to_json()["cpus_added"] == []


def test_first_pool_is_created() -> None:
    diff = change(CURRENT, current=None, holdings=())
    assert diff.created and not diff.is_empty()
    assert diff.cpus_added == CURRENT.cpus
    assert diff.memory_bytes_delta == 4 * GiB


def test_diff_of_cpus_devices_memory_and_ways() -> None:
    new = replace(
        CURRENT,
        cpus=(0, *CURRENT.cpus[:-1]),
        memory_bytes=5 * GiB,
        llc_way_mask=0xFFFF,
        devices=("0000:03:00.0", "serial0", "0000:04:00.0"),
    )
    diff = change(new)
    assert (diff.cpus_added, diff.cpus_removed) == ((0,), (15,))
    assert (diff.memory_bytes_delta, diff.memory_base_changed, diff.llc_changed) == (GiB, False, True)
    assert (diff.devices_added, diff.devices_removed) == (("0000:04:00.0",), ())


def test_absent_cpu_is_enodev() -> None:
    error = refusal(replace(CURRENT, cpus=(*CURRENT.cpus, 99)))
    assert (error.errno, error.detail) == ("ENODEV", "pool cpu 99 is not present on this machine")


def test_absent_device_is_enodev() -> None:
    error = refusal(replace(CURRENT, devices=("nope",)))
    assert error.errno == "ENODEV"
    assert "pool device nope" in error.detail


@pytest.mark.parametrize("mask", [0x1_0000, 0])
def test_llc_mask_outside_hardware_is_einval(mask: int) -> None:
    error = refusal(replace(CURRENT, llc_way_mask=mask))
    assert error.errno == "EINVAL"
    assert "hardware's 0xffff" in error.detail


@pytest.mark.parametrize("size", [0, 4095, GiB + 1])
def test_memory_must_be_nonzero_and_page_aligned(size: int) -> None:
    error = refusal(replace(CURRENT, memory_bytes=size))
    assert error.errno == "EINVAL"
    assert f"pool memory_bytes {size}" in error.detail


def test_unaligned_base_is_einval() -> None:
    assert refusal(replace(CURRENT, memory_base=POOL_BASE + 1)).errno == "EINVAL"


def test_taking_a_held_cpu_is_ebusy_naming_the_instance() -> None:
    error = refusal(replace(CURRENT, cpus=tuple(cpu for cpu in CURRENT.cpus if cpu != 4)))
    assert (error.errno, error.status) == ("EBUSY", 409)
    assert "cpu 4 is held by instance 2 (web)" in error.detail


def test_taking_held_ways_or_devices_is_ebusy() -> None:
    ways = refusal(replace(CURRENT, llc_way_mask=0xFF8))
    assert (ways.errno, ways.detail.split(";")[0]) == ("EBUSY", "llc ways 0x4 are held by instance 2 (web)")
    devices = refusal(replace(CURRENT, devices=("0000:03:00.0",)))
    assert "device serial0 is held by instance 2 (web)" in devices.detail


def test_shrinking_below_held_memory_is_ebusy_naming_holders() -> None:
    error = refusal(replace(CURRENT, memory_bytes=1 * GiB))
    assert error.errno == "EBUSY"
    assert error.detail == (
        "pool memory_bytes 1 GiB is less than the 1536 MiB held by instance 2 (web), instance 3 (db)"
    )


def test_rfc_v2_pool_must_lie_inside_the_reservation() -> None:
    too_big = refusal(replace(CURRENT, memory_bytes=8 * GiB), profile="rfc-v2")
    assert (too_big.errno, too_big.status) == ("ERANGE", 422)
    assert "exceeds the 4 GiB mkkernel_pool= reservation" in too_big.detail
    outside = refusal(replace(CURRENT, memory_base=POOL_BASE + GiB), profile="rfc-v2", holdings=())
    assert outside.errno == "EINVAL"
    assert "lies outside the mkkernel_pool= reservation" in outside.detail
    # The tree grows its pool from the page allocator: no reservation bound.
    change(replace(CURRENT, memory_bytes=8 * GiB), profile="tree")


def test_rfc_v2_base_cannot_move_under_instances_memory() -> None:
    moved = replace(CURRENT, memory_base=POOL_BASE + GiB, memory_bytes=2 * GiB)
    error = refusal(moved, profile="rfc-v2")
    assert error.errno == "EBUSY"
    assert "instance 2 (web), instance 3 (db) hold pool memory" in error.detail
    assert change(moved, profile="rfc-v2", holdings=()).memory_base_changed
    assert change(moved, profile="tree").memory_base_changed  # only a hint there


def _state(free: int) -> PoolState:
    chunks = (
        MemChunk(POOL_BASE, 2 * GiB, 0),
        MemChunk(0x3_0000_0000, GiB, 1),
        MemChunk(0x4_0000_0000, GiB, 1),
    )
    return PoolState(
        spec=CURRENT,
        chunks=chunks,
        free_memory_bytes=free,
        free_cpus=(),
        free_llc_way_mask=None,
        free_devices=(),
    )


def test_tree_shrink_must_be_whole_free_chunks() -> None:
    assert (
        change(replace(CURRENT, memory_bytes=2 * GiB), pool_state=_state(2560 * MiB)).memory_bytes_delta
        == -2 * GiB
    )
    partial = refusal(replace(CURRENT, memory_bytes=3584 * MiB), pool_state=_state(2560 * MiB))
    assert partial.errno == "EBUSY"
    assert "512 MiB is not whole free chunks" in partial.detail
    assert "0x400000000 (1 GiB)" in partial.detail
    busy = refusal(replace(CURRENT, memory_bytes=2 * GiB), pool_state=_state(1 * GiB))
    assert busy.errno == "EBUSY"
    assert "1 GiB is free (held by instance 2 (web), instance 3 (db))" in busy.detail

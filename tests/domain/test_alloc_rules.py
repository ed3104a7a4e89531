"""Every daemon check of DESIGN "Daemon checks on top of the kernel": errno and the offending item."""

from __future__ import annotations

import pytest
from alloc_topologies import GiB, MiB, holding, make_ledger, make_pool, make_topology, request

from mkd.domain.allocation import Ledger, plan_instances
from mkd.domain.requests import InstanceRequest
from mkd.errors import KernelError


@pytest.fixture
def ledger() -> Ledger:
    topology = make_topology()
    web = holding(2, "web", (3, 4), memory_bytes=1 * GiB, llc_way_mask=0x00C, devices=("serial0",))
    return make_ledger(topology, make_pool(topology), [web])


def refusal(ledger: Ledger, *requests: InstanceRequest, u32_memory: bool = False) -> KernelError:
    with pytest.raises(KernelError) as caught:
        plan_instances(ledger, list(requests), u32_memory=u32_memory)
    return caught.value


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "1-31 characters"),
        ("x" * 32, "1-31 characters"),
        ("a/b", "has '/'"),
        ("has space", "has ' '"),
        ("12345", "is numeric"),
        ("-3", "is numeric"),
        (".", "cannot be a sysfs directory name"),
        ("..", "cannot be a sysfs directory name"),
    ],
)
def test_bad_name_is_einval(ledger: Ledger, name: str, fragment: str) -> None:
    error = refusal(ledger, request(name))
    assert error.errno == "EINVAL"
    assert fragment in error.detail
    assert error.status == 422


@pytest.mark.parametrize("name", ["a", "x" * 31, "web-1", "A,b.c_d+e", "1a", "...", ".web", "+"])
def test_good_names_are_accepted(ledger: Ledger, name: str) -> None:
    assert plan_instances(ledger, [request(name)], u32_memory=False)[0].name == name


@pytest.mark.parametrize("instance_id", [0, -1, 2048, 2049])
def test_id_outside_range_is_einval(ledger: Ledger, instance_id: int) -> None:
    error = refusal(ledger, request("db", instance_id))
    assert error.errno == "EINVAL"
    assert f"id {instance_id} is outside 1..2047" in error.detail


def test_duplicate_existing_name_is_eexist(ledger: Ledger) -> None:
    error = refusal(ledger, request("web"))
    assert (error.errno, error.status) == ("EEXIST", 409)
    assert "name 'web' is already used by instance 2 (web)" in error.detail


def test_duplicate_existing_id_is_eexist(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", 2))
    assert error.errno == "EEXIST"
    assert "id 2 is already used by instance 2 (web)" in error.detail


def test_duplicates_within_one_plan_are_eexist(ledger: Ledger) -> None:
    by_name = refusal(ledger, request("db"), request("db"))
    assert by_name.errno == "EEXIST"
    assert "instance 'db': name 'db' is already used by instance 1 (db)" in by_name.detail
    by_id = refusal(ledger, request("db", 7), request("cache", 7))
    assert by_id.errno == "EEXIST"
    assert "instance 'cache': id 7 is already used by instance 7 (db)" in by_id.detail


def test_no_pool_is_einval() -> None:
    topology = make_topology()
    error = refusal(make_ledger(topology, None), request("db"))
    assert error.errno == "EINVAL"
    assert "no pool" in error.detail


def test_absent_cpu_is_enodev(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(5, 99)))
    assert (error.errno, error.status) == ("ENODEV", 422)
    assert "cpu 99 is not present" in error.detail


def test_cpu_outside_pool_is_ebusy_with_raw_kernel_note(ledger: Ledger) -> None:
    tree = refusal(ledger, request("db", cpus=(0,)))
    assert (tree.errno, tree.status) == ("EBUSY", 409)
    assert "cpu 0 is not in the pool" in tree.detail
    assert "tree kernel would create the instance without it" in tree.detail
    v2 = refusal(ledger, request("db", cpus=(0,)), u32_memory=True)
    assert "rfc-v2 kernel would take it from the host anyway" in v2.detail


def test_owned_cpu_is_ebusy_naming_owner_and_raw_kernel(ledger: Ledger) -> None:
    tree = refusal(ledger, request("db", cpus=(5, 3)))
    assert tree.errno == "EBUSY"
    assert "cpu 3 is owned by instance 2 (web)" in tree.detail
    assert "tree kernel would create the instance without it" in tree.detail
    v2 = refusal(ledger, request("db", cpus=(3,)), u32_memory=True)
    assert "cpu 3 is owned by instance 2 (web); the raw rfc-v2 kernel would share it" in v2.detail


def test_cpu_listed_twice_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(5, 6, 5)))
    assert error.errno == "EINVAL"
    assert "cpu 5 is listed twice" in error.detail


def test_first_offending_cpu_is_named(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(4, 99)))
    assert error.errno == "EBUSY"
    assert "cpu 4 is owned" in error.detail


def test_cpu_outside_numa_nodes_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(9,), numa_nodes=(0,)))
    assert error.errno == "EINVAL"
    assert "cpu 9 is on node 1, outside numa_nodes [0]" in error.detail


def test_unknown_numa_node_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpu_count=1, numa_nodes=(2,)))
    assert error.errno == "EINVAL"
    assert "numa node 2 does not exist" in error.detail


def test_both_cpus_and_count_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(5,), cpu_count=1))
    assert error.errno == "EINVAL"
    assert "either cpus or cpu_count" in error.detail


@pytest.mark.parametrize(
    ("mask", "fragment"),
    [
        (0, "llc_way_mask 0x0 is zero"),
        (0xF000, "llc_way_mask 0xf000 is not a subset of the pool's 0xfff (ways 0xf000 are outside)"),
        (1 << 33, "is not a u32"),
    ],
)
def test_llc_mask_zero_or_outside_pool_is_einval(ledger: Ledger, mask: int, fragment: str) -> None:
    error = refusal(ledger, request("db", llc_way_mask=mask))
    assert error.errno == "EINVAL"
    assert fragment in error.detail


def test_llc_mask_overlap_is_ebusy_naming_owner(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", llc_way_mask=0x018))
    assert error.errno == "EBUSY"
    assert "llc_way_mask 0x18 overlaps instance 2 (web) on ways 0x8" in error.detail


def test_llc_mask_without_pool_ways_is_einval() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology, llc_way_mask=None))
    error = refusal(ledger, request("db", llc_way_mask=0x1))
    assert error.errno == "EINVAL"
    assert "pool reserves no LLC ways" in error.detail


def test_unknown_device_is_enodev(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", devices=("0000:99:00.0",)))
    assert (error.errno, error.status) == ("ENODEV", 422)
    assert "device 0000:99:00.0 is not present" in error.detail


def test_device_outside_pool_is_ebusy(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", devices=("0000:04:00.0",)))
    assert error.errno == "EBUSY"
    assert "device 0000:04:00.0 is not in the pool" in error.detail


def test_assigned_device_is_ebusy_naming_owner(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", devices=("0000:03:00.0", "serial0")))
    assert error.errno == "EBUSY"
    assert "device serial0 is assigned to instance 2 (web)" in error.detail


def test_device_listed_twice_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", devices=("0000:03:00.0", "0000:03:00.0")))
    assert error.errno == "EINVAL"
    assert "device 0000:03:00.0 is listed twice" in error.detail


def test_zero_memory_is_allowed(ledger: Ledger) -> None:
    (spec,) = plan_instances(ledger, [request("db", cpus=(5,), memory_bytes=0)], u32_memory=True)
    assert spec.memory_bytes == 0


def test_unaligned_memory_is_einval(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", memory_bytes=1000))
    assert error.errno == "EINVAL"
    assert "memory_bytes 1000 is not a multiple of the 4 KiB page" in error.detail


def test_memory_beyond_free_is_enomem(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", memory_bytes=3 * GiB + 512 * MiB))
    assert (error.errno, error.status) == ("ENOMEM", 409)
    assert "need 3584 MiB, 3 GiB free" in error.detail


def test_memory_beyond_one_instance_limit_is_enomem() -> None:
    topology = make_topology()
    ledger = make_ledger(topology, make_pool(topology), max_instance_bytes=512 * MiB)
    error = refusal(ledger, request("db", memory_bytes=1 * GiB))
    assert error.errno == "ENOMEM"
    assert "need 1 GiB, at most 512 MiB fits in one instance" in error.detail


def test_rfc_v2_memory_is_u32(ledger: Ledger) -> None:
    limit = 0xFFFFF000
    big = make_ledger(make_topology(), make_pool(make_topology(), memory_bytes=8 * GiB))
    plan_instances(big, [request("db", memory_bytes=limit)], u32_memory=True)
    error = refusal(big, request("db", memory_bytes=limit + 4096), u32_memory=True)
    assert error.errno == "EINVAL"
    assert "u32" in error.detail
    # The tree carries memory-bytes as u64: the same size is fine there.
    plan_instances(big, [request("db", memory_bytes=limit + 4096)], u32_memory=False)


def test_check_order_memory_shape_before_cpus(ledger: Ledger) -> None:
    error = refusal(ledger, request("db", cpus=(3,), memory_bytes=1))
    assert error.errno == "EINVAL"
    assert "memory_bytes 1" in error.detail


def test_single_json_request_has_no_prefix_but_dt_origin_does(ledger: Ledger) -> None:
    assert refusal(ledger, request("db", cpus=(3,))).detail.startswith("cpu 3")
    from_tree = InstanceRequest(
        name="db", id=None, resources=request("x", cpus=(3,)).resources, origin="fragment@0"
    )
    assert refusal(ledger, from_tree).detail.startswith("fragment@0: cpu 3")


def test_accepted_explicit_request_is_kernel_ready(ledger: Ledger) -> None:
    (spec,) = plan_instances(
        ledger,
        [request("db", cpus=(6, 5), memory_bytes=256 * MiB, llc_way_mask=0x3, devices=("0000:03:00.0",),
                 memory_policy="local")],
        u32_memory=False,
    )
    assert spec.id == 1  # lowest free
    assert spec.cpus == (6, 5)  # order kept: the tree boots the first
    assert (spec.memory_bytes, spec.llc_way_mask, spec.devices) == (256 * MiB, 0x3, ("0000:03:00.0",))
    assert spec.numa_node == 0


def test_prefer_local_without_per_node_memory_leaves_the_node_to_the_kernel(ledger: Ledger) -> None:
    """Nothing says node 0 has room, so naming it could make the kernel refuse (spec 5.5)."""
    (spec,) = plan_instances(ledger, [request("db", cpus=(6, 5), memory_bytes=256 * MiB)], u32_memory=False)
    assert spec.numa_node is None

"""HostBackend as the daemon sees it: probe, protocol, faults from settings, threads."""

from __future__ import annotations

import errno
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import BackendFactory, MiB, kernel_of, spec, with_baseline

from mkd.errors import KernelError


def test_probe_capabilities_per_profile(make_backend: BackendFactory) -> None:
    v2 = make_backend(kernel_profile="rfc-v2").probe()
    assert (v2.backend, v2.kernel_profile, v2.arch) == ("simulated", "rfc-v2", "x86_64")
    assert v2.capabilities == {
        "halt": False,
        "per_instance_unload": True,
        "hot_update": False,
        "numa": False,
        "active_reported": False,
        "console": False,
        "hotplug_active": False,
        "llc_way_masks": False,
    }
    tree = make_backend(kernel_profile="tree", arch="arm64").probe()
    # the release ignores llc-way-mask unless the simulator is told otherwise (spec 8.6.3)
    assert tree.arch == "arm64" and {k for k, v in tree.capabilities.items() if not v} == {"llc_way_masks"}
    assert len(tree.topology.cpus) == 8


def test_faults_come_from_settings(make_backend: BackendFactory) -> None:
    backend = make_backend(kernel_profile="tree", faults={"halt_ack": False, "fail_start": "EIO"})
    assert kernel_of(backend).faults.halt_ack is False and kernel_of(backend).faults.fail_start == "EIO"


def test_read_unknown_instance_is_enoent(make_backend: BackendFactory) -> None:
    backend = make_backend()
    with pytest.raises(KernelError) as exc:
        backend.read_instance(42)
    assert exc.value.errno_code == errno.ENOENT and exc.value.status == 404


def test_concurrent_calls_from_a_threadpool(make_backend: BackendFactory) -> None:
    backend = with_baseline(make_backend(kernel_profile="rfc-v2"))

    def create(i: int) -> int:
        return backend.create_instances([spec(i, f"i{i}", (), 8 * MiB)])[0].id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = sorted(pool.map(create, range(1, 41)))
        list(pool.map(lambda i: backend.read_instance(i), ids))
    assert ids == list(range(1, 41))
    assert backend.read_pool().free_memory_bytes == (1 << 30) - 40 * 8 * MiB
    chunks = [(c.base, c.bytes) for inst in backend.list_instances() for c in inst.memory]
    assert len(set(chunks)) == 40  # nobody got the same memory

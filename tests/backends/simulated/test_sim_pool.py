"""The global pool under both profiles (spec 3.1, 4, 5.1, 5.4) through the client's apply_pool/read_pool.

The v2 kernel ignores the root tree's /resources (spec 5.2): a v2 baseline is the daemon's, and
its rules (page alignment, CPUs and devices present, holdings kept) are the domain's, tested in
tests/domain/test_alloc_pool_change.py; the client checks the boot pool range it reads from
/proc/iomem (DESIGN "Device trees per profile").
"""

from __future__ import annotations

import errno
from dataclasses import replace

import pytest
from conftest import POOL_BASE, BackendFactory, GiB, MiB, kernel_of, spec, tree_baseline, v2_baseline

from mkd.backends.host.backend import HostBackend
from mkd.errors import KernelError
from mkd.kernel_types import MemChunk, PoolSpec


def _errno(exc: pytest.ExceptionInfo[KernelError]) -> int:
    return exc.value.errno_code


@pytest.mark.parametrize(
    ("base", "size", "code"),
    [
        (POOL_BASE - MiB, MiB, errno.EINVAL),  # starts below the boot pool
        (POOL_BASE + GiB - MiB, 2 * MiB, errno.EINVAL),  # runs past its end
        (POOL_BASE, 2 * GiB, errno.ERANGE),  # larger than the boot pool
    ],
)
def test_v2_baseline_must_lie_inside_the_boot_pool(
    make_backend: BackendFactory, base: int, size: int, code: int
) -> None:
    backend = make_backend(kernel_profile="rfc-v2")
    with pytest.raises(KernelError) as exc:
        backend.apply_pool(PoolSpec(cpus=(1,), memory_base=base, memory_bytes=size))
    assert _errno(exc) == code
    assert backend.read_pool().spec is None


def test_v2_reapply_replaces_but_keeps_instance_holdings(v2: HostBackend) -> None:
    v2.create_instances([spec(1, "web", cpus=(2,), memory=256 * MiB)])
    pool = v2.read_pool()
    assert pool.free_cpus == (1, 3, 4, 5, 6, 7)
    assert pool.free_memory_bytes == GiB - 256 * MiB
    web_base = v2.read_instance(1).memory[0].base
    # a smaller range that still holds web's memory is accepted: replaced, not merged
    smaller = replace(v2_baseline(), cpus=(2, 3), memory_base=web_base, memory_bytes=512 * MiB)
    after = v2.apply_pool(smaller)
    assert after.spec == smaller
    assert after.chunks == (MemChunk(web_base, 512 * MiB, None),)
    assert after.free_cpus == (3,)
    assert after.free_memory_bytes == 256 * MiB


def test_v2_without_baseline_uses_the_whole_boot_pool(make_backend: BackendFactory) -> None:
    backend = make_backend(kernel_profile="rfc-v2")
    assert backend.read_pool().spec is None  # the client has no baseline to show
    assert kernel_of(backend).read_pool().chunks == (MemChunk(POOL_BASE, GiB, None),)  # the kernel's pool
    created = backend.create_instances([spec(1, "web", cpus=(3,), memory=64 * MiB)])
    assert created[0].memory_bytes == 64 * MiB
    assert POOL_BASE <= created[0].memory[0].base < POOL_BASE + GiB


def test_tree_baseline_and_chunks(make_backend: BackendFactory) -> None:
    backend = make_backend(kernel_profile="tree", llc_way_masks=True)
    assert backend.read_pool().chunks == ()
    with pytest.raises(KernelError) as exc:
        backend.apply_pool(replace(tree_baseline(), cpus=(1, 9)))
    assert _errno(exc) == errno.ENODEV
    with pytest.raises(KernelError) as exc:
        backend.apply_pool(replace(tree_baseline(), memory_bytes=MiB + 1))  # vector 41
    assert _errno(exc) == errno.EINVAL
    pool = backend.apply_pool(tree_baseline())
    assert pool.chunks == (MemChunk(POOL_BASE, GiB, 0),)  # memory_base is the first chunk's hint
    assert pool.free_cpus == (1, 2, 3, 4)
    assert pool.free_llc_way_mask == 0xFF0
    assert pool.free_devices == ("0000:01:00.0",)


def test_tree_grow_and_shrink_whole_free_chunks(make_backend: BackendFactory) -> None:
    backend = make_backend(kernel_profile="tree", pool_bytes=4 * GiB)
    backend.apply_pool(tree_baseline())
    grown = backend.apply_pool(replace(tree_baseline(), memory_bytes=GiB + 256 * MiB))
    assert [c.bytes for c in grown.chunks] == [GiB, 256 * MiB]
    assert grown.free_memory_bytes == GiB + 256 * MiB
    # an instance lands in the newest chunk first (gen_pool order), which makes it busy
    backend.create_instances([spec(1, "web", cpus=(1,), memory=128 * MiB)])
    with pytest.raises(KernelError) as exc:
        backend.apply_pool(replace(tree_baseline(), memory_bytes=GiB))
    assert _errno(exc) == errno.EBUSY
    assert "in use" in exc.value.detail
    # a shrink that is not a whole chunk is refused too
    backend.delete_instance(1)
    with pytest.raises(KernelError) as exc:
        backend.apply_pool(replace(tree_baseline(), memory_bytes=GiB + 128 * MiB))
    assert _errno(exc) == errno.EBUSY
    shrunk = backend.apply_pool(replace(tree_baseline(), memory_bytes=GiB))
    assert [c.bytes for c in shrunk.chunks] == [GiB]


def test_tree_reconcile_cpu_and_device_ops(tree: HostBackend) -> None:
    tree.create_instances([spec(1, "web", cpus=(2,), memory=64 * MiB, devices=("0000:01:00.0",))])
    with pytest.raises(KernelError) as exc:  # cpu-remove of a lent CPU
        tree.apply_pool(replace(tree_baseline(), cpus=(1, 3, 4)))
    assert _errno(exc) == errno.EBUSY
    with pytest.raises(KernelError) as exc:  # device-remove of a lent device
        tree.apply_pool(replace(tree_baseline(), devices=()))
    assert _errno(exc) == errno.EBUSY
    with pytest.raises(KernelError) as exc:  # cpu-add of an absent CPU: not online in the host (M26)
        tree.apply_pool(replace(tree_baseline(), cpus=(1, 2, 3, 4, 12)))
    assert _errno(exc) == errno.EINVAL
    after = tree.apply_pool(replace(tree_baseline(), cpus=(2, 5, 6), devices=("0000:01:00.0", "uart0")))
    assert after.free_cpus == (5, 6)
    assert after.free_devices == ("uart0",)


def test_tree_ordering_cpu_remove_is_checked_before_memory(tree: HostBackend) -> None:
    """spec 5.4 /resources order: cpu-remove fails first even when memory-add would fail too."""
    tree.create_instances([spec(1, "web", cpus=(2,), memory=64 * MiB)])
    with pytest.raises(KernelError) as exc:
        tree.apply_pool(replace(tree_baseline(), cpus=(1,), memory_bytes=64 * GiB))
    assert _errno(exc) == errno.EBUSY
    with pytest.raises(KernelError) as exc:
        tree.apply_pool(replace(tree_baseline(), memory_bytes=64 * GiB))
    assert _errno(exc) == errno.ENOMEM

"""Pages a load takes from the kernel's page allocator, never from pool memory (spec 2.3 step 6,
2.4 step 4, 2.7.1 step 11 tree note, 3.1, 6.4), and their allocation failures (ENOMEM)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of, load_flags, spec

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.errors import KernelError
from mkd.kernel_types import KernelInstance, LoadRequest, PoolSpec

HIGH_BASELINE = 0x7E0000000  # a baseline far above 4 GiB, reaching the top of a 32 GiB machine


def _load(backend: HostBackend, image: Path, instance_id: int) -> KernelInstance:
    return backend.kexec_file_load(LoadRequest(image, None, b"console=ttyS0\0", load_flags(instance_id), "k" * 64))


def _inside(addr: int, ranges: list[tuple[int, int]]) -> bool:
    return any(base <= addr < base + size for base, size in ranges)


def _kernel_pages(backend: HostBackend, instance_id: int) -> list[tuple[str, int, int]]:
    """Every page the instance's kimage holds outside its pool: control, swap, manifest, IPI."""
    record = kernel_of(backend)._model.instances[instance_id].kimage
    assert record is not None
    control = [(kind, addr, size) for kind, (addr, size, in_pool) in zip(("control", "swap"), record.control_pages,
                                                                          strict=True) if not in_pool]
    return control + record.kernel_pages


def _all_chunks(backend: HostBackend) -> list[tuple[int, int]]:
    pool = [(chunk.base, chunk.bytes) for chunk in backend.read_pool().chunks]
    return pool + [(mem.base, mem.bytes) for inst in backend.list_instances() for mem in inst.memory]


def test_tree_control_pages_never_land_in_a_pool_chunk(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """The reproduction: with the baseline at 0x7e0000000 the old "System RAM" (pool_base/pool_bytes
    only) put both instances' control page at 0x7fffff000, inside instance 2's chunk."""
    backend = make_backend(kernel_profile="tree", memory_bytes=32 * GiB)
    backend.apply_pool(PoolSpec(cpus=(1, 2, 3, 4), memory_base=HIGH_BASELINE, memory_bytes=GiB // 2))
    backend.create_instances([spec(1, "a", (1,), 256 * MiB), spec(2, "b", (2,), 256 * MiB)])
    for instance_id in (1, 2):
        _load(backend, images["vmlinux"], instance_id)
    chunks = _all_chunks(backend)
    pages = _kernel_pages(backend, 1) + _kernel_pages(backend, 2)
    assert sorted(kind for kind, _, _ in pages) == sorted(["control", "swap", "manifest", "ipi"] * 2)
    for kind, addr, size in pages:
        assert not _inside(addr, chunks) and not _inside(addr + size - 1, chunks), (kind, hex(addr))
    # the page allocator hands each page out once
    starts = sorted((addr, size) for _, addr, size in pages)
    assert all(a + s <= b for (a, s), (b, _) in zip(starts, starts[1:], strict=False))
    # what the API shows as the kimage's control and swap segments is the same pages
    kimage = backend.read_instance(2).kimage
    assert kimage is not None
    shown = [(s.kind, s.mem, s.memsz) for s in kimage.segments if s.kind in ("control", "swap")]
    assert shown == _kernel_pages(backend, 2)[:2] and not any(s.in_pool for s in kimage.segments[-2:])


def test_unload_gives_the_pages_back(tree: HostBackend, images: dict[str, Path]) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    _load(tree, images["vmlinux"], 1)
    first = _kernel_pages(tree, 1)
    tree.unload(1)
    _load(tree, images["vmlinux"], 1)
    assert _kernel_pages(tree, 1) == first


@pytest.mark.parametrize("kind", ["manifest", "ipi", "control", "swap"])
def test_tree_page_allocation_failure_is_enomem(
    make_backend: BackendFactory, images: dict[str, Path], kind: str
) -> None:
    """spec 2.4 step 4 (manifest, IPI ring) and 2.7.1 step 11: ENOMEM, association undone, state
    READY, every pool page back."""
    backend = make_backend(Faults(fail_page_alloc=[kind]), kernel_profile="tree")
    backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=0x1_0000_0000, memory_bytes=GiB))
    backend.create_instances([spec(1, "web", (1,), 256 * MiB)])
    with pytest.raises(KernelError) as caught:
        _load(backend, images["vmlinux"], 1)
    assert caught.value.errno_code == errno.ENOMEM
    inst = backend.read_instance(1)
    assert (inst.kernel_state, inst.kimage) == ("ready", None)
    assert kernel_of(backend)._model.instances[1].pool.avail() == 256 * MiB
    kernel_of(backend).faults.fail_page_alloc = []
    assert _load(backend, images["vmlinux"], 1).kernel_state == "loaded"


@pytest.mark.parametrize("bug_compat", [False, True])
def test_v2_kho_fdt_page_failure_is_enomem(
    make_backend: BackendFactory, images: dict[str, Path], bug_compat: bool
) -> None:
    """spec 2.3 step 6 (patch 16): after the association; bug_compat keeps the dangling kimage."""
    backend = make_backend(Faults(fail_page_alloc=["kho_fdt"]), kernel_profile="rfc-v2", bug_compat=bug_compat)
    backend.create_instances([spec(1, "web", (1,), 256 * MiB)])
    with pytest.raises(KernelError) as caught:
        _load(backend, images["vmlinux"], 1)
    assert caught.value.errno_code == errno.ENOMEM
    assert backend.read_instance(1).kernel_state == ("loading" if bug_compat else "ready")
    assert kernel_of(backend)._model.instances[1].pool.avail() == 256 * MiB  # nothing was placed yet


def test_v2_holds_one_kho_fdt_page_outside_the_pool(v2: HostBackend, images: dict[str, Path]) -> None:
    v2.create_instances([spec(1, "web", (1,), 256 * MiB)])
    _load(v2, images["vmlinux"], 1)
    pages = _kernel_pages(v2, 1)
    assert [kind for kind, _, _ in pages] == ["kho_fdt"]  # v2 control pages are pool pages (3.4)
    assert not any(_inside(addr, _all_chunks(v2)) for _, addr, _ in pages)

"""Hot update of instance resources (tree; DESIGN "PATCH")."""

from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import BackendFactory, GiB, MiB, load_flags, spec, with_baseline

from mkd.backends.simulated.backend import SimulatedBackend
from mkd.backends.simulated.faults import Faults
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec


def _refused(backend: SimulatedBackend, new: InstanceSpec) -> int:
    before = (backend.list_instances(), backend.read_pool())
    with pytest.raises(KernelError) as exc:
        backend.update_instance(new)
    assert (backend.list_instances(), backend.read_pool()) == before  # nothing changed
    return exc.value.errno_code


def test_v2_cannot_update(v2: SimulatedBackend) -> None:
    v2.create_instances([spec(1, "web", (1,), 64 * MiB)])
    assert _refused(v2, spec(1, "web", (1, 2), 64 * MiB)) == errno.EOPNOTSUPP
    with pytest.raises(KernelError) as exc:
        v2.update_instance(spec(9, "nine"))
    assert exc.value.errno_code == errno.ENOENT


def test_ready_instance_updates_directly(tree_llc: SimulatedBackend) -> None:
    tree = tree_llc
    base = spec(1, "web", (1,), 256 * MiB)
    tree.create_instances([base])
    grown = tree.update_instance(
        replace(base, cpus=(1, 2), memory_bytes=384 * MiB, devices=("0000:01:00.0",), llc_way_mask=0x30)
    )
    assert (grown.cpus, grown.memory_bytes, grown.devices, grown.llc_way_mask) == (
        (1, 2),
        384 * MiB,
        ("0000:01:00.0",),
        0x30,
    )
    assert tree.read_pool().free_memory_bytes == GiB - 384 * MiB
    shrunk = tree.update_instance(replace(base, cpus=(2,), memory_bytes=64 * MiB))
    assert (shrunk.cpus, shrunk.memory_bytes, shrunk.devices) == ((2,), 64 * MiB, ())
    assert tree.read_pool().free_memory_bytes == GiB - 64 * MiB
    assert tree.kernel._model.instances[1].pool.avail() == 64 * MiB
    tree.create_instances([spec(2, "db", (3,), 0)])
    assert _refused(tree, replace(base, cpus=(2, 3))) == errno.EBUSY  # CPU 3 lent to db
    assert _refused(tree, replace(base, memory_bytes=2 * GiB)) == errno.ENOMEM
    assert _refused(tree, replace(base, name="renamed")) == errno.EINVAL


def test_loaded_instance_keeps_memory_holding_segments(tree: SimulatedBackend, images: dict[str, Path]) -> None:
    base = spec(1, "web", (1,), 256 * MiB)
    tree.create_instances([base])
    tree.kernel.kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    assert _refused(tree, replace(base, memory_bytes=4 * MiB)) == errno.EBUSY
    updated = tree.update_instance(replace(base, cpus=(1, 2), memory_bytes=512 * MiB))
    assert updated.kernel_state == "loaded" and updated.cpus == (1, 2)


def test_active_instance_needs_the_spawn_ack(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    base = spec(1, "web", (1,), 256 * MiB)
    backend.create_instances([base])
    backend.kernel.kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    backend.start(1)
    backend.faults.update_ack = False
    assert _refused(backend, replace(base, cpus=(1, 2))) == errno.EBUSY
    backend.faults.update_ack = True
    assert backend.update_instance(replace(base, cpus=(1, 2))).cpus == (1, 2)


def test_failed_instance_cannot_update(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(Faults(fail_after_start=True), kernel_profile="tree"))
    base = spec(1, "web", (1,), 256 * MiB)
    backend.create_instances([base])
    backend.kernel.kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    backend.start(1)
    backend.kernel.flush()
    assert _refused(backend, replace(base, cpus=(1, 2))) == errno.EBUSY

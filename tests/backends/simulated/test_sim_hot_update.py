"""Hot update of instance resources through the client: one overlay on /instances/<name> (tree,
spec 5.4, 8.6; DESIGN "PATCH"). LLC way masks are not in the kernel's update ops (spec 4.1 is
documentation only); the M-vectors test the ops at the kernel's overlays/new."""

from __future__ import annotations

import errno
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import BackendFactory, GiB, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec


def _refused(backend: HostBackend, new: InstanceSpec) -> int:
    before = (backend.list_instances(), backend.read_pool())
    with pytest.raises(KernelError) as exc:
        backend.update_instance(new)
    assert (backend.list_instances(), backend.read_pool()) == before  # nothing changed
    return exc.value.errno_code


def test_v2_cannot_update(v2: HostBackend) -> None:
    v2.create_instances([spec(1, "web", (1,), 64 * MiB)])
    assert _refused(v2, spec(1, "web", (1, 2), 64 * MiB)) == errno.EOPNOTSUPP
    with pytest.raises(KernelError) as exc:  # the profile answers before any id is looked up
        v2.update_instance(spec(9, "nine"))
    assert exc.value.errno_code == errno.EOPNOTSUPP


def test_ready_instance_updates_directly(tree: HostBackend) -> None:
    base = spec(1, "web", (1,), 256 * MiB)
    tree.create_instances([base])
    grown = tree.update_instance(replace(base, cpus=(1, 2), memory_bytes=384 * MiB, devices=("0000:01:00.0",)))
    assert (grown.cpus, grown.memory_bytes, grown.devices) == ((1, 2), 384 * MiB, ("0000:01:00.0",))
    assert tree.read_pool().free_memory_bytes == GiB - 384 * MiB
    # memory-remove names whole regions (spec 8.6.2): the first 256 MiB region goes
    shrunk = tree.update_instance(replace(base, cpus=(2,), memory_bytes=128 * MiB))
    assert (shrunk.cpus, shrunk.memory_bytes, shrunk.devices) == ((2,), 128 * MiB, ())
    assert tree.read_pool().free_memory_bytes == GiB - 128 * MiB
    assert kernel_of(tree)._model.instances[1].pool.avail() == 128 * MiB
    tree.create_instances([spec(2, "db", (3,), 0)])
    # each refusal fails at the transaction's first op, so nothing of it stays applied (spec 5.4)
    current = replace(base, cpus=(2,), memory_bytes=128 * MiB)
    assert _refused(tree, replace(current, cpus=(2, 3))) == errno.EBUSY  # CPU 3 lent to db
    assert _refused(tree, replace(current, memory_bytes=2 * GiB)) == errno.ENOMEM


def test_loaded_instance_keeps_memory_holding_segments(tree: HostBackend, images: dict[str, Path]) -> None:
    base = spec(1, "web", (1,), 256 * MiB)
    tree.create_instances([base])
    kernel_of(tree).kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    assert _refused(tree, replace(base, memory_bytes=0)) == errno.EBUSY  # its one region holds them (M20)
    updated = tree.update_instance(replace(base, cpus=(1, 2), memory_bytes=512 * MiB))
    assert updated.kernel_state == "loaded" and updated.cpus == (1, 2)


def test_active_instance_needs_the_spawn_ack(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    base = spec(1, "web", (1,), 256 * MiB)
    backend.create_instances([base])
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    backend.start(1)
    kernel_of(backend).faults.update_ack = False
    assert _refused(backend, replace(base, cpus=(1, 2))) == errno.ETIMEDOUT  # no ACK comes (M13)
    kernel_of(backend).faults.update_ack = True
    assert backend.update_instance(replace(base, cpus=(1, 2))).cpus == (1, 2)


def test_failed_instance_cannot_update(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(Faults(fail_after_start=True), kernel_profile="tree"))
    base = spec(1, "web", (1,), 256 * MiB)
    backend.create_instances([base])
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, None, load_flags(1))
    backend.start(1)
    kernel_of(backend).flush()
    assert _refused(backend, replace(base, cpus=(1, 2))) == errno.EBUSY

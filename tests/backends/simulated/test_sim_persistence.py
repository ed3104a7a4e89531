"""The kernel's state file: one JSON document, atomic, reloaded identical."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import CLIENT_STATE_FILE
from mkd.backends.simulated.persistence import model_to_json
from mkd.errors import KernelError


def _snapshot(backend: HostBackend) -> object:
    kernel = kernel_of(backend)
    return (
        backend.list_instances(),
        backend.read_pool(),
        kernel.proc_kimage(),
        {i: inst.pool.free_ranges() for i, inst in kernel._model.instances.items()},
        [c.allocator.free_ranges() for c in kernel._model.pool.chunks],
        model_to_json(kernel._model, kernel.settings),
    )


def _populate(backend: HostBackend, images: dict[str, Path]) -> None:
    backend.create_instances(
        [spec(1, "web", (1,), 256 * MiB), spec(2, "db", (2,), 128 * MiB), spec(3, "idle", (3,), 64 * MiB)]
    )
    kernel_of(backend).kexec_file_load(
        images["vmlinux"],
        images["initrd"],
        b"console=ttyS0\0",
        load_flags(1, initrd=True),
        kernel_sha256="a" * 64,
        initrd_sha256="b" * 64,
    )
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, None, load_flags(2))


def test_tree_round_trip(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    _populate(first, images)
    first.start(2)
    kernel_of(first).flush()
    before = _snapshot(first)
    first.close()
    second = make_backend(kernel_profile="tree")
    assert _snapshot(second) == before
    assert second.read_instance(2).kernel_state == "active"
    # the reloaded kernel keeps working: unload returns every allocation
    second.stop(2, force=True)
    second.unload(2)
    assert kernel_of(second)._model.instances[2].pool.avail() == 128 * MiB


def test_v2_round_trip_with_a_dangling_kimage(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    first = with_baseline(make_backend(kernel_profile="rfc-v2", bug_compat=True))
    _populate(first, images)
    with pytest.raises(KernelError) as refused:
        kernel_of(first).kexec_file_load(images["garbage"], None, None, load_flags(3))
    assert refused.value.errno_code == errno.ENOEXEC  # after the association: the dangling kimage
    assert first.read_instance(3).kernel_state == "loading"
    before = _snapshot(first)
    first.close()
    second = make_backend(kernel_profile="rfc-v2", bug_compat=True)
    assert _snapshot(second) == before
    assert second.read_instance(3).kernel_state == "loading"
    assert kernel_of(second)._model.kexec_image_slot == 2


def test_state_file_is_written_atomically(make_backend: BackendFactory, tmp_path: Path) -> None:
    backend = with_baseline(make_backend(kernel_profile="tree"))
    backend.create_instances([spec(1, "web", (1,), 64 * MiB)])
    path = backend.settings.simulator_state_path
    data = json.loads(path.read_text())
    assert [inst["name"] for inst in data["instances"]] == ["web"]
    assert data["next_tx"] == 3  # baseline + one instance-create overlay; the first tx is tx_2
    # no temporary file left behind (the client keeps its own load records beside it)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, CLIENT_STATE_FILE])


def test_a_different_machine_starts_empty(make_backend: BackendFactory) -> None:
    first = with_baseline(make_backend(kernel_profile="tree"))
    first.create_instances([spec(1, "web", (1,), 64 * MiB)])
    first.close()
    assert make_backend(kernel_profile="rfc-v2").list_instances() == []  # another kernel booted

"""The incremental state store always equals a full serialisation of the kernel model."""

from __future__ import annotations

import json

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.persistence import model_to_json, stored_document
from mkd.kernel_types import InstanceSpec, LoadRequest
from mkd.kexec.flags import load_flags
from tests.backends.simulated.conftest import BackendFactory, MiB, kernel_of, with_baseline


def on_disk(backend: HostBackend) -> object:
    return stored_document(backend.settings.simulator_state_path, backend.settings.simulator)


def full(backend: HostBackend) -> object:
    return json.loads(json.dumps(model_to_json(kernel_of(backend)._model, backend.settings.simulator)))


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_every_mutation_leaves_the_file_equal_to_the_model(
    make_backend: BackendFactory, images: dict[str, object], profile: str
) -> None:
    backend = with_baseline(make_backend(kernel_profile=profile))
    specs = [InstanceSpec(id=i, name=f"i{i}", cpus=(i,), memory_bytes=64 * MiB) for i in (1, 2, 3)]
    backend.create_instances(specs)
    assert on_disk(backend) == full(backend)
    kernel = images["vmlinux"]
    backend.kexec_file_load(LoadRequest(kernel, None, b"quiet\0", load_flags(2, has_initrd=False)))  # type: ignore[arg-type]
    assert on_disk(backend) == full(backend)
    backend.start(2)
    assert on_disk(backend) == full(backend)
    if profile == "tree":
        backend.stop(2, force=True)
        backend.update_instance(InstanceSpec(id=1, name="i1", cpus=(1, 4), memory_bytes=128 * MiB))
        assert on_disk(backend) == full(backend)
    backend.unload(2)
    backend.delete_instance(3)
    assert on_disk(backend) == full(backend)
    reloaded = make_backend(kernel_profile=profile)
    assert full(reloaded) == full(backend)

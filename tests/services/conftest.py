"""Fixtures shared by the console tests: a tree kernel client with instance 1 (`web`) loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import simulated_client
from mkd.config import load_settings
from mkd.kernel_types import InstanceSpec, LoadRequest, PoolSpec
from mkd.kexec.flags import load_flags
from mkd.testing import imagegen

MiB = 1 << 20


@pytest.fixture
def client(tmp_path: Path) -> Iterator[HostBackend]:
    settings = load_settings(None, overrides={"daemon.state_dir": tmp_path / "state",
                                              "simulator.kernel_profile": "tree"})
    settings.daemon.state_dir.mkdir(parents=True)
    backend = simulated_client(settings)
    backend.apply_pool(PoolSpec(cpus=(2, 3, 4), memory_base=0x1_0000_0000, memory_bytes=1 << 30))
    backend.create_instances([InstanceSpec(id=1, name="web", cpus=(2,), memory_bytes=128 * MiB)])
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(imagegen.vmlinux())
    backend.kexec_file_load(LoadRequest(kernel=kernel, initrd=None, cmdline=b"console=mktty0\0",
                                        flags=load_flags(1, has_initrd=False)))
    yield backend
    backend.close()

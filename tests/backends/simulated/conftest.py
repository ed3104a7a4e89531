"""Fixtures for the simulated kernel: small machines under both profiles, images on disk.

Every backend here is the daemon's one kernel client over the simulator (`simulated_client`),
so these tests run the code that drives a real host. Rules the client cannot reach through the
kernel's interface are tested at the simulator's own entry points (`kernel_of(client)`: its
device_tree write, overlays/new, kexec_file_load, reboot).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.client import simulated_client
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.kernel import SimulatedKernel
from mkd.backends.simulated.kernel_files import SimulatedKernelIO
from mkd.config import Settings, SimulatorSettings
from mkd.kernel_types import InstanceSpec, PoolSpec
from mkd.kexec.flags import KEXEC_FILE_NO_INITRAMFS, KEXEC_MULTIKERNEL, kexec_mk_id
from mkd.testing import imagegen

GiB = 1 << 30
MiB = 1 << 20
POOL_BASE = 0x1_0000_0000


def make_settings(tmp_path: Path, **simulator: Any) -> Settings:
    sim: dict[str, Any] = {
        "cpus": 8,
        "numa_nodes": 2,
        "pool_base": POOL_BASE,
        "pool_bytes": GiB,
        "halt_ack_timeout_s": 0.05,
        "resource_ack_timeout_s": 0.05,
        "devices": ["0000:01:00.0", "uart0"],
    }
    sim.update(simulator)
    return Settings.model_validate(
        {"daemon": {"state_dir": str(tmp_path / "state")}, "simulator": SimulatorSettings(**sim).model_dump()}
    )


BackendFactory = Callable[..., HostBackend]


def kernel_of(client: HostBackend) -> SimulatedKernel:
    """The simulated kernel behind a client, for its own entry points and test hooks."""
    assert isinstance(client.io, SimulatedKernelIO)
    return client.io.kernel


@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[BackendFactory]:
    """Build clients over simulated kernels on one state dir; every one built is closed at teardown."""
    built: list[HostBackend] = []

    def factory(injected: Faults | None = None, /, **simulator: Any) -> HostBackend:
        backend = simulated_client(make_settings(tmp_path, **simulator), injected)
        built.append(backend)
        return backend

    yield factory
    for backend in built:
        backend.close()


def v2_baseline() -> PoolSpec:
    return PoolSpec(
        cpus=(1, 2, 3, 4, 5, 6, 7),
        memory_base=POOL_BASE,
        memory_bytes=GiB,
        llc_way_mask=0xFF0,
        devices=("0000:01:00.0",),
    )


def tree_baseline() -> PoolSpec:
    """Spec 7 tree setup: CPUs {1,2,3,4}, one 1 GiB chunk."""
    return PoolSpec(
        cpus=(1, 2, 3, 4), memory_base=POOL_BASE, memory_bytes=GiB, llc_way_mask=0xFF0, devices=("0000:01:00.0",)
    )


def with_baseline(backend: HostBackend) -> HostBackend:
    profile = backend.settings.simulator.kernel_profile
    backend.apply_pool(v2_baseline() if profile == "rfc-v2" else tree_baseline())
    return backend


@pytest.fixture
def v2(make_backend: BackendFactory) -> HostBackend:
    backend = make_backend(kernel_profile="rfc-v2")
    backend.apply_pool(v2_baseline())
    return backend


@pytest.fixture
def tree(make_backend: BackendFactory) -> HostBackend:
    backend = make_backend(kernel_profile="tree")
    backend.apply_pool(tree_baseline())
    return backend


@pytest.fixture
def tree_llc(make_backend: BackendFactory) -> HostBackend:
    """tree with `llc_way_masks = true`: the LLC rules of spec 4.1 (the release ignores masks, 8.6.3)."""
    backend = make_backend(kernel_profile="tree", llc_way_masks=True)
    backend.apply_pool(tree_baseline())
    return backend


def spec(
    instance_id: int = 1, name: str = "web", cpus: tuple[int, ...] = (1,), memory: int = 512 * MiB, **extra: Any
) -> InstanceSpec:
    return InstanceSpec(id=instance_id, name=name, cpus=cpus, memory_bytes=memory, **extra)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Kernel images on disk, shared read-only: a vmlinux with an MK note, a bzImage, garbage, an
    initrd, an arm64 Image. A test that deletes or edits an image works on its own copy."""
    root = tmp_path_factory.mktemp("images")
    return {
        "vmlinux": imagegen.write_file(root / "vmlinux", imagegen.vmlinux()),
        "bzimage": imagegen.write_file(root / "bzImage", imagegen.bzimage()),
        "garbage": imagegen.write_file(root / "garbage", b"\x01" * 1023),
        "initrd": imagegen.write_file(root / "initrd", imagegen.initrd(size=8192)),
        "arm64": imagegen.write_file(root / "Image", imagegen.arm64_image()),
    }


def load_flags(instance_id: int, *, initrd: bool = False) -> int:
    flags = KEXEC_MULTIKERNEL | kexec_mk_id(instance_id)
    return flags if initrd else flags | KEXEC_FILE_NO_INITRAMFS

"""reboot(2) spawn and halt, the running-spawn model and watch() (spec 6.2, 6.3; vectors 25-35)."""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.faults import Faults
from mkd.backends.simulated.reboot import (
    LINUX_REBOOT_CMD_MULTIKERNEL,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
    LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
)
from mkd.devicetree.overlay import build_instance_create_overlay
from mkd.errors import KernelError
from mkd.kernel_types import KernelEvent
from mkd.kexec.flags import KEXEC_FILE_FLAGS


def _errno_of(call: object, *args: object, **kwargs: object) -> int:
    with pytest.raises(KernelError) as exc:
        call(*args, **kwargs)  # type: ignore[operator]
    return exc.value.errno_code


def _loaded(backend: HostBackend, image: Path, instance_id: int = 1, cpus: tuple[int, ...] = (1,)) -> None:
    backend.create_instances([spec(instance_id, f"i{instance_id}", cpus, 256 * MiB)])
    kernel_of(backend).kexec_file_load(image, None, b"quiet\0", load_flags(instance_id))


def _state(backend: HostBackend, instance_id: int = 1) -> str:
    return backend.read_instance(instance_id).kernel_state


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_start_without_kimage_is_einval(make_backend: BackendFactory, profile: str) -> None:
    """vectors 25, 28 (first half)."""
    backend = with_baseline(make_backend(kernel_profile=profile))
    backend.create_instances([spec(1, "web", (1,), 64 * MiB)])
    assert _errno_of(kernel_of(backend).reboot, LINUX_REBOOT_CMD_MULTIKERNEL, 1) == errno.EINVAL
    assert _errno_of(kernel_of(backend).reboot, LINUX_REBOOT_CMD_MULTIKERNEL, 0) == errno.EINVAL
    assert _errno_of(kernel_of(backend).reboot, LINUX_REBOOT_CMD_MULTIKERNEL, 99) == errno.EINVAL
    assert _errno_of(kernel_of(backend).reboot, LINUX_REBOOT_CMD_MULTIKERNEL, 1, magic1=0) == errno.EINVAL
    assert _errno_of(kernel_of(backend).reboot, 0x1234, 1) == errno.EINVAL
    assert _state(backend) == "ready"


def test_v2_start_rules(v2: HostBackend, images: dict[str, Path]) -> None:
    """vector 26 (boot CPU online), no CPUs, success changes no state."""
    _loaded(v2, images["vmlinux"], 1, cpus=(0, 3))  # CPU 0 is the host's and stays online
    assert _errno_of(v2.start, 1) == errno.EBUSY
    _loaded(v2, images["vmlinux"], 2, cpus=())
    assert _errno_of(v2.start, 2) == errno.EINVAL
    _loaded(v2, images["vmlinux"], 3, cpus=(5, 4))
    assert v2.start(3).kernel_state == "loading"  # rfc-v2 never reports active
    status = kernel_of(v2).spawn_status(3)
    assert status is not None and status.running
    assert _errno_of(v2.stop, 3, force=False) == errno.EINVAL  # rfc-v2 has no halt
    assert _errno_of(kernel_of(v2).reboot, LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE, 3) == errno.EINVAL
    assert _errno_of(v2.delete_instance, 3) == errno.EBUSY  # vector 35: rmdir while loading


def test_tree_start_and_halts(tree: HostBackend, images: dict[str, Path]) -> None:
    """vectors 27, 29, 30, 31, 32, 33."""
    _loaded(tree, images["vmlinux"])
    assert _state(tree) == "loaded"
    assert _errno_of(tree.stop, 1, force=False) == errno.EINVAL  # 29: graceful halt of loaded
    assert tree.stop(1, force=True).kernel_state == "loaded"  # 31: force on loaded is repeatable
    assert tree.start(1).kernel_state == "active"  # 27
    assert _errno_of(tree.start, 1) == errno.EBUSY  # CPUs not parked
    assert _errno_of(tree.delete_instance, 1) == errno.EBUSY
    assert tree.stop(1, force=False).kernel_state == "loaded"  # 30: ACK arrives
    assert tree.start(1).kernel_state == "active"
    assert tree.stop(1, force=True).kernel_state == "loaded"
    assert _errno_of(tree.delete_instance, 1) == errno.EBUSY  # instance-remove of loaded
    tree.create_instances([spec(2, "idle", (2,), 0)])
    assert _errno_of(tree.stop, 2, force=True) == errno.EINVAL  # 32: force on ready
    assert _errno_of(tree.stop, 99, force=False) == errno.ENOENT  # 33
    assert _errno_of(tree.stop, 99, force=True) == errno.ENOENT


def test_tree_start_refusals(tree: HostBackend, images: dict[str, Path]) -> None:
    # CPU 7 is not in the pool: the kernel creates the instance without CPUs (spec 5.3), which
    # the client would refuse, so it is created at the kernel's overlays/new
    kernel = kernel_of(tree)
    tx_id = kernel.overlay_new(build_instance_create_overlay(spec(1, "i1", (7,), 256 * MiB)))
    assert kernel.tx_status(tx_id) == "applied" and kernel.read_instance(1).cpus == ()
    kernel.kexec_file_load(images["vmlinux"], None, b"quiet\0", load_flags(1))
    assert _errno_of(tree.start, 1) == errno.EINVAL
    _loaded(tree, images["bzimage"], 2, cpus=(2,))  # loads, cannot spawn (DESIGN, spec 2.7.5 a)
    assert _errno_of(tree.start, 2) == errno.EINVAL
    assert _state(tree, 2) == "loaded"


def test_tree_start_needs_the_kept_sources(tree: HostBackend, tmp_path: Path, images: dict[str, Path]) -> None:
    """spec 3.5: each spawn re-copies from the kept sources; a vanished file is EINVAL."""
    copy = tmp_path / "vmlinux-copy"
    copy.write_bytes(images["vmlinux"].read_bytes())
    _loaded(tree, copy)
    copy.unlink()
    assert _errno_of(tree.start, 1) == errno.EINVAL
    assert _state(tree) == "loaded"


def test_tree_recovery_start_after_silent_stop(tree: HostBackend, images: dict[str, Path]) -> None:
    """spec 6.2: ACTIVE with CPUs parked (stopped without notice) -> LOADED -> spawn -> ACTIVE."""
    _loaded(tree, images["vmlinux"])
    tree.start(1)
    kernel_of(tree).spawn_stop_silently(1)
    assert _state(tree) == "active"
    assert _errno_of(tree.stop, 1, force=False) == errno.ETIMEDOUT  # a dead spawn never ACKs
    assert tree.start(1).kernel_state == "active"


def test_tree_graceful_halt_timeout(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(Faults(halt_ack=False), kernel_profile="tree"))
    _loaded(backend, images["vmlinux"])
    backend.start(1)
    began = time.monotonic()
    assert _errno_of(backend.stop, 1, force=False) == errno.ETIMEDOUT
    assert time.monotonic() - began >= 0.04  # waited halt_ack_timeout_s
    assert _state(backend) == "active"
    assert backend.stop(1, force=True).kernel_state == "loaded"


def test_fail_start_fault(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    backend = with_baseline(make_backend(Faults(fail_start="EIO"), kernel_profile="tree"))
    _loaded(backend, images["vmlinux"])
    assert _errno_of(backend.start, 1) == errno.EIO
    assert _state(backend) == "loaded"


@pytest.mark.parametrize("profile", ["rfc-v2", "tree"])
def test_heartbeats_tick_only_under_rfc_v2(make_backend: BackendFactory, images: dict[str, Path], profile: str) -> None:
    """spec 6.3; the tree release has no MK_SYS_HEARTBEAT sender (8.2.2), so its spawns never tick."""
    backend = with_baseline(make_backend(kernel_profile=profile, heartbeat_interval_s=0.01))
    _loaded(backend, images["vmlinux"], cpus=(1, 2) if profile == "rfc-v2" else (1,))
    assert kernel_of(backend).spawn_status(1) is None
    backend.start(1)
    time.sleep(0.05)
    status = kernel_of(backend).spawn_status(1)
    assert status is not None and status.running
    if profile == "rfc-v2":
        assert status.heartbeats >= 3
        assert status.last_heartbeat is not None and status.last_heartbeat > status.started_at
    else:
        assert (status.heartbeats, status.last_heartbeat) == (0, None)


async def _next_event(backend: HostBackend) -> KernelEvent:
    stream = kernel_of(backend).watch()  # what the kernel pushes (the client polls instead)
    try:
        return await asyncio.wait_for(anext(stream), 5)
    finally:
        await stream.aclose()


def _drain_after_close(backend: HostBackend, stream: object) -> list[KernelEvent]:
    backend.close()

    async def drain() -> list[KernelEvent]:
        return [event async for event in stream]  # type: ignore[attr-defined]

    return asyncio.run(drain())


def test_a_self_halt_is_seen_by_rereading_status(tree: HostBackend, images: dict[str, Path]) -> None:
    """vector 34 as amended by spec 8.1.2/8.4: MK_SYS_HALTED -> loaded, and no notification."""
    _loaded(tree, images["vmlinux"])
    tree.start(1)
    stream = tree.watch()
    kernel_of(tree).spawn_halt_self(1)
    assert kernel_of(tree).status_file("i1") == "loaded\n"
    assert _errno_of(kernel_of(tree).spawn_halt_self, 1) == errno.EINVAL  # nothing runs any more
    assert _drain_after_close(tree, stream) == []


def test_a_failure_after_start_is_seen_by_rereading_status(
    make_backend: BackendFactory, images: dict[str, Path]
) -> None:
    backend = with_baseline(make_backend(Faults(fail_after_start=True), kernel_profile="tree"))
    _loaded(backend, images["vmlinux"])
    stream = backend.watch()
    assert kernel_of(backend).reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1) == 0  # active, then the spawn dies
    kernel_of(backend).flush()
    inst = backend.read_instance(1)
    assert inst.kernel_state == "failed" and inst.failure is not None  # FAILED: fault injection only (8.2.1)
    # from FAILED: load is EBUSY (kimage kept), start EBUSY, unload -> ready, then delete
    assert _errno_of(backend.start, 1) == errno.EBUSY  # vector 28, second half
    assert _errno_of(kernel_of(backend).kexec_file_load, images["vmlinux"], None, None, load_flags(1)) == errno.EBUSY
    assert backend.unload(1).kernel_state == "ready"
    backend.delete_instance(1)
    assert _drain_after_close(backend, stream) == []  # the tree kernel raised no notification


def test_watch_delivers_a_v2_failure_after_start(make_backend: BackendFactory, images: dict[str, Path]) -> None:
    """rfc-v2 keeps pushing kernel-initiated changes to watch()."""
    backend = with_baseline(make_backend(Faults(fail_after_start=True), kernel_profile="rfc-v2"))
    _loaded(backend, images["vmlinux"], cpus=(1, 2))

    async def scenario() -> KernelEvent:
        waiter = asyncio.create_task(_next_event(backend))
        await asyncio.sleep(0)  # the stream is registered before the spawn dies
        kernel_of(backend).reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1)
        return await waiter

    event = asyncio.run(scenario())
    assert (event.id, event.to_state) == (1, "failed")


def test_halt_commands_are_distinct_values() -> None:
    assert (
        LINUX_REBOOT_CMD_MULTIKERNEL,
        LINUX_REBOOT_CMD_MULTIKERNEL_HALT,
        LINUX_REBOOT_CMD_MULTIKERNEL_HALT_FORCE,
    ) == (0x4D4B4C49, 0x4D4B4C48, 0x4D4B4C46)
    assert KEXEC_FILE_FLAGS & 0xFFE0 == 0xFFE0

"""watch(): changes the kernel makes on its own become KernelEvents; ours do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from conftest import POOL_BASE, GiB, Host, MakeHost, MiB

from mkd.backends.host.syscalls import LINUX_REBOOT_CMD_MULTIKERNEL
from mkd.kernel_types import InstanceSpec, KernelEvent, LoadRequest, PoolSpec
from mkd.kexec.flags import load_flags


def test_watch_reports_kernel_changes_only(tree: Host, images: dict[str, Path]) -> None:
    tree.backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=0, memory_bytes=GiB))
    tree.backend.create_instances([InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=128 * MiB)])

    async def scenario() -> list[KernelEvent]:
        stream = tree.backend.watch()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.05)
        # Our own load is not a kernel event...
        await asyncio.to_thread(
            tree.backend.kexec_file_load,
            LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None, flags=load_flags(1, has_initrd=False)),
        )
        await asyncio.sleep(0.05)
        # ...a start by someone else is...
        tree.kernel.reboot(LINUX_REBOOT_CMD_MULTIKERNEL, 1)
        event = await asyncio.wait_for(first, 2)
        # ...and so is the spawned kernel halting on its own (MK_SYS_HALTED, spec 1.2).
        tree.kernel.spawn_halt_self(1)
        second = await asyncio.wait_for(stream.__anext__(), 2)
        tree.backend.close()
        assert isinstance(stream, AsyncGenerator)
        await stream.aclose()
        return [event, second]

    events = asyncio.run(scenario())
    assert events[0] == KernelEvent(1, "web", "loaded", "active", reason="kernel status changed")
    assert events[1] == KernelEvent(1, "web", "active", "loaded", reason="kernel status changed")


def _load_and_start(host: Host, images: dict[str, Path], instance_id: int) -> None:
    host.backend.kexec_file_load(LoadRequest(kernel=images["kernel"], initrd=None, cmdline=None,
                                             flags=load_flags(instance_id, has_initrd=False)))
    host.backend.start(instance_id)


def test_a_poll_of_the_running_reads_only_their_status(tree: Host, images: dict[str, Path]) -> None:
    # spec 8.2.2: only a running spawn changes its instance's status on its own, so the daemon
    # names the instances it records ACTIVE and the client reads no other instance's files.
    tree.backend.apply_pool(PoolSpec(cpus=(1, 2, 3), memory_base=0, memory_bytes=GiB))
    tree.backend.create_instances([InstanceSpec(id=i, name=f"vm{i}", cpus=(i,), memory_bytes=128 * MiB)
                                   for i in (1, 2, 3)])
    _load_and_start(tree, images, 1)
    tree.io.reads.clear()
    assert tree.backend.poll_changes(running=[1]) == []
    assert tree.io.reads == ["instances/vm1/status"]
    # The spawn halts itself (MK_SYS_HALTED, spec 8.4): the next poll sees it, once.
    tree.kernel.spawn_halt_self(1)
    tree.kernel.flush()
    assert tree.backend.poll_changes(running=[1]) == [
        KernelEvent(1, "vm1", "active", "loaded", reason="kernel status changed")]
    assert tree.backend.poll_changes(running=[1]) == []
    # With no running instance a poll reads no file at all (the listing is one directory read).
    tree.io.reads.clear()
    assert tree.backend.poll_changes(running=[]) == []
    assert tree.io.reads == []


def test_a_poll_of_the_running_sees_rfc_v2_failures_and_instances_that_went_away(
    make_host: MakeHost, images: dict[str, Path]
) -> None:
    # rfc-v2's status never says `active` (spec 1.1): the daemon's record says which run. A
    # spawn that fails after its start (fault injection) turns `failed`; an instance removed
    # behind the daemon's back is reported gone, running or not.
    v2 = make_host("rfc-v2", faults={"fail_after_start": True})
    v2.backend.apply_pool(PoolSpec(cpus=(1, 2), memory_base=POOL_BASE, memory_bytes=GiB))
    v2.backend.create_instances([InstanceSpec(id=1, name="web", cpus=(1,), memory_bytes=128 * MiB),
                                 InstanceSpec(id=2, name="db", cpus=(2,), memory_bytes=128 * MiB)])
    with v2.kernel._lock:  # the failure (kernel work) waits until the start's read-back is done
        _load_and_start(v2, images, 1)
    v2.kernel.flush()
    v2.kernel.rmdir("instances/db")
    changes = v2.backend.poll_changes(running=[1])
    assert [(c.id, c.from_state, c.to_state) for c in changes] == [(2, "ready", "deleted"), (1, "loading", "failed")]
    assert v2.backend.poll_changes(running=[1]) == []

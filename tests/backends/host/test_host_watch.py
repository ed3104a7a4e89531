"""watch(): changes the kernel makes on its own become KernelEvents; ours do not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path

from conftest import GiB, Host, MiB

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

"""watch(): what the kernel changes on its own reaches every watcher, in order; what a caller does
through the syscalls does not; close() ends every watcher after what was already published."""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import MiB, load_flags, spec

from mkd.backends.simulated.backend import SimulatedBackend
from mkd.backends.simulated.events import EventStream
from mkd.kernel_types import KernelEvent


async def _take(stream: EventStream, count: int) -> list[KernelEvent]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(count)]


def test_watch_reports_kernel_changes_only_to_every_watcher(tree: SimulatedBackend, images: dict[str, Path]) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB), spec(2, "db", (2,), 256 * MiB)])
    first, second = tree.watch(), tree.watch()
    # The caller's own changes: load, start, unload, halt. None of them is a kernel event.
    for instance_id in (1, 2):
        tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(instance_id))
        tree.start(instance_id)
    tree.stop(2, force=True)
    # The spawns' own doing, in this order: web halts itself (MK_SYS_HALTED), then db, started again.
    tree.kernel.spawn_halt_self(1)
    tree.kernel.flush()
    tree.start(2)
    tree.kernel.spawn_halt_self(2)
    tree.kernel.flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await _take(first, 2), await _take(second, 2)

    seen_first, seen_second = asyncio.run(both())
    expected = [
        KernelEvent(1, "web", "active", "loaded", reason=seen_first[0].reason),
        KernelEvent(2, "db", "active", "loaded", reason=seen_first[1].reason),
    ]
    assert seen_first == expected and seen_second == expected
    assert "MK_SYS_HALTED" in seen_first[0].reason
    # nothing else was published: close() ends both streams right after what they already took
    tree.close()

    async def rest(stream: EventStream) -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    assert asyncio.run(rest(first)) == [] and asyncio.run(rest(second)) == []


def test_close_delivers_what_was_published_then_ends(tree: SimulatedBackend, images: dict[str, Path]) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    tree.start(1)
    stream = tree.watch()
    tree.kernel.spawn_halt_self(1)
    tree.kernel.flush()
    tree.close()

    async def drain() -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    events = asyncio.run(drain())
    assert [(e.id, e.from_state, e.to_state) for e in events] == [(1, "active", "loaded")]


def test_a_watcher_that_leaves_does_not_end_the_others(tree: SimulatedBackend, images: dict[str, Path]) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    leaving, staying = tree.watch(), tree.watch()
    asyncio.run(leaving.aclose())
    tree.start(1)
    tree.kernel.spawn_halt_self(1)
    tree.kernel.flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await asyncio.wait_for(_all(leaving), 5), await _take(staying, 1)

    gone, kept = asyncio.run(both())
    assert gone == [] and [(e.id, e.to_state) for e in kept] == [(1, "loaded")]


async def _all(stream: EventStream) -> list[KernelEvent]:
    return [event async for event in stream]

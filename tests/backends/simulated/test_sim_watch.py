"""watch(): under rfc-v2 what the kernel changes on its own reaches every watcher, in order; what a
caller does through the syscalls does not; close() ends every watcher after what was already
published. The tree release raises no notification (spec 8.1.2): nothing is pushed, a client
polls the status files (the daemon's poller, tests/api/test_api_status_poll_console.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, load_flags, spec, v2_baseline

from mkd.backends.simulated.backend import SimulatedBackend
from mkd.backends.simulated.events import EventStream
from mkd.backends.simulated.faults import Faults
from mkd.kernel_types import KernelEvent


@pytest.fixture
def failing_v2(make_backend: BackendFactory) -> SimulatedBackend:
    """rfc-v2 whose spawns fail right after they start: a change the kernel makes on its own
    (v2 has no MK_SYS_HALTED handler, so a self-halt changes nothing there)."""
    backend = make_backend(Faults(fail_after_start=True), kernel_profile="rfc-v2")
    backend.apply_pool(v2_baseline())
    return backend


async def _take(stream: EventStream, count: int) -> list[KernelEvent]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(count)]


def test_watch_reports_kernel_changes_only_to_every_watcher(
    failing_v2: SimulatedBackend, images: dict[str, Path]
) -> None:
    tree = failing_v2  # rfc-v2 pushes what its spawns do (the tree does not, see the module doc)
    tree.create_instances([spec(1, "web", (1,), 256 * MiB), spec(2, "db", (2,), 256 * MiB)])
    first, second = tree.watch(), tree.watch()
    # The caller's own changes: load and start. Neither is a kernel event; the spawns' own
    # failure after each start is, in this order: web, then db.
    for instance_id in (1, 2):
        tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(instance_id))
        tree.start(instance_id)
        tree.kernel.flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await _take(first, 2), await _take(second, 2)

    seen_first, seen_second = asyncio.run(both())
    assert [(e.id, e.name) for e in seen_first] == [(1, "web"), (2, "db")]
    assert seen_first == seen_second
    assert all(e.to_state == "failed" for e in seen_first)
    # nothing else was published: close() ends both streams right after what they already took
    tree.close()

    async def rest(stream: EventStream) -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    assert asyncio.run(rest(first)) == [] and asyncio.run(rest(second)) == []


def test_the_tree_pushes_nothing_its_status_file_says_loaded(tree: SimulatedBackend, images: dict[str, Path]) -> None:
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    tree.start(1)
    stream = tree.watch()
    tree.kernel.spawn_exit(1, "poweroff")
    assert tree.kernel.status_file("web").strip() == "loaded"
    tree.close()

    async def drain() -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)

    assert asyncio.run(drain()) == []


def test_close_delivers_what_was_published_then_ends(failing_v2: SimulatedBackend, images: dict[str, Path]) -> None:
    tree = failing_v2
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    stream = tree.watch()
    tree.start(1)
    tree.kernel.flush()
    tree.close()

    async def drain() -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    events = asyncio.run(drain())
    assert [(e.id, e.to_state) for e in events] == [(1, "failed")]


def test_a_watcher_that_leaves_does_not_end_the_others(failing_v2: SimulatedBackend, images: dict[str, Path]) -> None:
    tree = failing_v2
    tree.create_instances([spec(1, "web", (1,), 256 * MiB)])
    tree.kernel.kexec_file_load(images["vmlinux"], None, b"\0", load_flags(1))
    leaving, staying = tree.watch(), tree.watch()
    asyncio.run(leaving.aclose())
    tree.start(1)
    tree.kernel.flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await asyncio.wait_for(_all(leaving), 5), await _take(staying, 1)

    gone, kept = asyncio.run(both())
    assert gone == [] and [e.id for e in kept] == [1]


async def _all(stream: EventStream) -> list[KernelEvent]:
    return [event async for event in stream]

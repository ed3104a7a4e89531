"""The simulated kernel's event hub (SimulatedKernel.watch; the client's watch() polls the status
files instead): what the kernel changes on its own reaches every watcher, in order; what a caller
does through the syscalls does not; close() ends every watcher after what was already published.

Only rfc-v2 publishes (the tree release raises no notification, spec 8.1.2), and a v2 start or
MK_SYS_HALTED leaves the state as it was (spec 6.2), so the kernel's own change here is a spawn
that fails after it started (`fail_after_start`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from conftest import BackendFactory, MiB, kernel_of, load_flags, spec, with_baseline

from mkd.backends.host.backend import HostBackend
from mkd.backends.simulated.events import EventStream
from mkd.backends.simulated.faults import Faults
from mkd.kernel_types import KernelEvent


@pytest.fixture
def failing(make_backend: BackendFactory) -> HostBackend:
    return with_baseline(make_backend(Faults(fail_after_start=True), kernel_profile="rfc-v2"))


async def _take(stream: EventStream, count: int) -> list[KernelEvent]:
    return [await asyncio.wait_for(anext(stream), 5) for _ in range(count)]


async def _all(stream: EventStream) -> list[KernelEvent]:
    return [event async for event in stream]


def _load(backend: HostBackend, images: dict[str, Path], instance_id: int) -> None:
    kernel_of(backend).kexec_file_load(images["vmlinux"], None, b"\0", load_flags(instance_id))


def test_watch_reports_kernel_changes_only_to_every_watcher(failing: HostBackend, images: dict[str, Path]) -> None:
    failing.create_instances([spec(1, "web", (1,), 256 * MiB), spec(2, "db", (2,), 256 * MiB)])
    kernel = kernel_of(failing)
    first, second = kernel.watch(), kernel.watch()
    # The caller's own changes (load, start) are no kernel event; the spawns then fail, in order.
    for instance_id in (1, 2):
        _load(failing, images, instance_id)
        failing.start(instance_id)
        kernel.flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await _take(first, 2), await _take(second, 2)

    seen_first, seen_second = asyncio.run(both())
    expected = [
        KernelEvent(1, "web", "loading", "failed", reason=seen_first[0].reason),
        KernelEvent(2, "db", "loading", "failed", reason=seen_first[1].reason),
    ]
    assert seen_first == expected and seen_second == expected
    assert "failed after start" in seen_first[0].reason
    # nothing else was published: close() ends both streams right after what they already took
    failing.close()

    async def rest(stream: EventStream) -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    assert asyncio.run(rest(first)) == [] and asyncio.run(rest(second)) == []


def test_close_delivers_what_was_published_then_ends(failing: HostBackend, images: dict[str, Path]) -> None:
    failing.create_instances([spec(1, "web", (1,), 256 * MiB)])
    _load(failing, images, 1)
    stream = kernel_of(failing).watch()
    failing.start(1)
    kernel_of(failing).flush()
    failing.close()

    async def drain() -> list[KernelEvent]:
        return await asyncio.wait_for(_all(stream), 5)  # a stream close() failed to end would time out

    events = asyncio.run(drain())
    assert [(e.id, e.from_state, e.to_state) for e in events] == [(1, "loading", "failed")]


def test_a_watcher_that_leaves_does_not_end_the_others(failing: HostBackend, images: dict[str, Path]) -> None:
    failing.create_instances([spec(1, "web", (1,), 256 * MiB)])
    _load(failing, images, 1)
    leaving, staying = kernel_of(failing).watch(), kernel_of(failing).watch()
    asyncio.run(leaving.aclose())
    failing.start(1)
    kernel_of(failing).flush()

    async def both() -> tuple[list[KernelEvent], list[KernelEvent]]:
        return await asyncio.wait_for(_all(leaving), 5), await _take(staying, 1)

    gone, kept = asyncio.run(both())
    assert gone == [] and [(e.id, e.to_state) for e in kept] == [(1, "failed")]

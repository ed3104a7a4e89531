"""Writes first: a read that arrives while a write is in flight waits for it, a short while at most
(issue 15 item 2: pollers must not make a write wait behind them).

The event loop and the GIL serve reads and writes alike, and a poller sends its next read as soon
as the last one is answered, so under steady polling a write's work in its worker thread gets the
GIL only between reads. Holding the reads back for READ_WAIT_S while a write is in flight leaves
the loop idle (in epoll, without the GIL), so the write runs at nearly its idle speed; the reads
then see the write's result, and wait no longer than READ_WAIT_S whatever the writes. Probes never
wait (DESIGN "Limits": they must answer however busy the daemon is); streams and the console are
not reads of this kind.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from mkd.api.audit_middleware import MUTATING
from mkd.api.cross_site_guard import PROBES

READ_WAIT_S = 0.020  # the longest a read waits for writes (readers' p99 goal: 50 ms)
READS = ("GET", "HEAD")


@dataclass
class _Writes:
    """The writes in flight on one event loop, and the reads waiting for them to end."""
    in_flight: int = 0
    waiting: list[asyncio.Future[None]] = field(default_factory=list)


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WritesFirst:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Per loop (tests serve one app from several): one loop's futures are not another's.
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writes] = weakref.WeakKeyDictionary()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        writes = self._loops.get(loop)
        if writes is None:
            writes = self._loops[loop] = _Writes()
        if scope["method"] in MUTATING:
            writes.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                writes.in_flight -= 1
                if writes.in_flight == 0:
                    for waiter in writes.waiting:
                        _release(waiter)
                    writes.waiting.clear()
            return
        if writes.in_flight and scope["method"] in READS and scope["path"] not in PROBES:
            await self._wait(loop, writes)
        await self.app(scope, receive, send)

    @staticmethod
    async def _wait(loop: asyncio.AbstractEventLoop, writes: _Writes) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        writes.waiting.append(waiter)
        timer = loop.call_later(READ_WAIT_S, _release, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in writes.waiting:
                writes.waiting.remove(waiter)

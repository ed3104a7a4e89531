"""In-process fan-out of committed events to live subscribers (the SSE streams).

The event log in the database is the source of truth; the bus only wakes streams up. A subscriber
whose queue is full is dropped (its stream closes) rather than sent a subset or blocking the daemon.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BusEvent:
    id: int
    type: str
    data: dict[str, Any]


class Subscription:
    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int, *, client: bool = True) -> None:
        self.loop = loop
        self.client = client  # an SSE stream (counted against max_event_streams), not the daemon's own
        self.queue: asyncio.Queue[BusEvent | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False

    def _offer(self, event: BusEvent | None) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            # Make room for the end-of-stream marker so the reader wakes up and disconnects.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self._subs: set[Subscription] = set()
        self._lock = threading.Lock()
        self.queue_size = queue_size

    def subscribe(self, *, client: bool = True) -> Subscription:
        sub = Subscription(asyncio.get_running_loop(), self.queue_size, client=client)
        with self._lock:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)

    @property
    def subscribers(self) -> int:
        """Clients' streams; the daemon's own followers (the reconciler) do not count."""
        with self._lock:
            return sum(1 for sub in self._subs if sub.client)

    def publish(self, events: list[BusEvent]) -> None:
        """Thread-safe: called after the transaction that stored `events` committed."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            for event in events:
                try:
                    sub.loop.call_soon_threadsafe(sub._offer, event)
                except RuntimeError:  # the subscriber's loop is closed
                    self.unsubscribe(sub)
                    break

    def close(self) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._offer, None)
            except RuntimeError:
                pass

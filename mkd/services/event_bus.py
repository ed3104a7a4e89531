"""In-process fan-out of committed events to live subscribers (the SSE streams).

The event log in the database is the source of truth; the bus only wakes streams up. A subscriber
whose queue is full is dropped (its stream closes) rather than sent a subset or blocking the daemon.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class BusEvent:
    id: int
    type: str
    data: dict[str, Any]

    @cached_property
    def data_json(self) -> str:
        """Serialised once, whatever the number of streams that send it."""
        return json.dumps(self.data)


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


def _offer_all(subs: list[Subscription], events: list[BusEvent]) -> None:
    for sub in subs:
        for event in events:
            sub._offer(event)


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
        by_loop: dict[asyncio.AbstractEventLoop, list[Subscription]] = defaultdict(list)
        for sub in subs:
            by_loop[sub.loop].append(sub)
        # One wake-up per loop (all the streams share the server's), not one per stream and event.
        for loop, group in by_loop.items():
            try:
                loop.call_soon_threadsafe(_offer_all, group, events)
            except RuntimeError:  # the loop is closed
                for sub in group:
                    self.unsubscribe(sub)

    def close(self) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._offer, None)
            except RuntimeError:
                pass

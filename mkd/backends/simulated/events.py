"""Fan-out of kernel-initiated changes to `watch()` iterators, from any thread to any event loop."""

from __future__ import annotations

import asyncio
import queue
import threading

from mkd.kernel_types import KernelEvent


class EventStream:
    """One watcher: an async iterator fed by `EventHub.publish` from whatever thread publishes.

    It is registered when created, so nothing published after `watch()` returns is missed even
    if the consumer has not started iterating yet.
    """

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self._items: queue.SimpleQueue[KernelEvent | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> KernelEvent:
        with self._hub.lock:
            if self._wakeup is None:
                self._loop = asyncio.get_running_loop()
                self._wakeup = asyncio.Event()
        wakeup = self._wakeup
        while True:
            # clear before polling: a publish after the poll sets the event again
            wakeup.clear()
            try:
                item = self._items.get_nowait()
            except queue.Empty:
                if self._closed:
                    raise StopAsyncIteration from None
                await wakeup.wait()
                continue
            if item is None:
                self._closed = True
                raise StopAsyncIteration
            return item

    async def aclose(self) -> None:
        self._hub.unsubscribe(self)

    def deliver(self, item: KernelEvent | None) -> None:
        """Queue an item (None ends the stream); caller holds the hub lock."""
        self._items.put(item)
        if self._loop is not None and self._wakeup is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)


class EventHub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._streams: list[EventStream] = []

    def subscribe(self) -> EventStream:
        stream = EventStream(self)
        with self.lock:
            self._streams.append(stream)
        return stream

    def unsubscribe(self, stream: EventStream) -> None:
        with self.lock:
            if stream in self._streams:
                self._streams.remove(stream)
                stream.deliver(None)

    def publish(self, event: KernelEvent) -> None:
        with self.lock:
            for stream in self._streams:
                stream.deliver(event)

    def close(self) -> None:
        with self.lock:
            streams, self._streams = self._streams, []
            for stream in streams:
                stream.deliver(None)

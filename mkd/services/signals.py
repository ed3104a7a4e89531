"""Wake-ups by instance, for waiters (GET …/wait): every published event and every change the
reconciler records names its instance here, so a waiter reads the instance once per change that
concerns it and never polls. Thread-safe; an asyncio.Event per waiter, set on its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

# Keys beside instance names (which start with a letter or digit): the pool's definition and the
# image store changed (the fleet's node agent republishes its capacity and images on them).
POOL_CHANGED = "@pool"
IMAGES_CHANGED = "@images"
ANY = "*"  # watched by who follows every change (the fleet's node agent), notified with each


class Signals:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def watch(self, keys: Iterable[str]) -> asyncio.Event:
        """An event set whenever one of `keys` (an instance's name or id) changes."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            for key in keys:
                self._waiting.setdefault(key, set()).add(entry)
        return entry[1]

    def unwatch(self, keys: Iterable[str], event: asyncio.Event) -> None:
        with self._lock:
            for key in keys:
                entries = self._waiting.get(key)
                if entries is None:
                    continue
                entries -= {e for e in entries if e[1] is event}
                if not entries:
                    del self._waiting[key]

    def notify(self, keys: Iterable[str]) -> None:
        with self._lock:
            entries = {entry for key in keys for entry in self._waiting.get(key, ())}
            entries.update(self._waiting.get(ANY, ()))
        for loop, event in entries:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the waiter's loop is gone
                pass

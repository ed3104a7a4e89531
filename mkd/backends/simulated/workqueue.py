"""A single worker thread for the kernel's asynchronous work (the host's workqueue, spec 1.2)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

_log = logging.getLogger(__name__)


class Workqueue:
    def __init__(self, name: str) -> None:
        self._items: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def queue_work(self, work: Callable[[], None]) -> None:
        self._items.put(work)

    def flush(self) -> None:
        """Wait until everything queued so far has run (flush_workqueue)."""
        self._items.join()

    def stop(self) -> None:
        self._items.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            work = self._items.get()
            try:
                if work is None:
                    return
                work()
            except Exception:  # one failed work item must not stop the queue
                _log.exception("simulated kernel work item failed")
            finally:
                self._items.task_done()

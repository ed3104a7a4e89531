"""The daemon's long-lived parts, created by the app's lifespan and handed to every service call."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import Engine

from mkd.backends.base import Backend
from mkd.config import Settings
from mkd.domain.allocation.ledger import Ledger
from mkd.images.store import ImageStore
from mkd.kernel_types import HostInfo
from mkd.services.console_follow import ConsoleFollowers
from mkd.services.console_history import ConsoleHistory
from mkd.services.event_bus import EventBus
from mkd.services.reconciler_metrics import ReconcilerMetrics
from mkd.services.signals import Signals


class Waker(Protocol):
    def wake(self, name: str) -> None: ...


@dataclass
class Daemon:
    settings: Settings
    engine: Engine
    backend: Backend
    store: ImageStore
    bus: EventBus
    host: HostInfo
    # Serialises this daemon's kernel calls, so clients see EBUSY only where the kernel's own
    # kexec lock would give it to a second process.
    kernel_lock: threading.RLock = field(default_factory=threading.RLock)
    # Who owns what, kept in step with the records so a create costs the same at 1,000 instances
    # as at 10; None means "rebuild from the records on next use".
    ledger: Ledger | None = None
    # The desired-state reconciler, once started: services wake it when a spec changes.
    reconciler: Waker | None = None
    desired_metrics: ReconcilerMetrics = field(default_factory=ReconcilerMetrics)
    signals: Signals = field(default_factory=Signals)
    waiters: int = 0  # open GET …/wait requests (DESIGN "Limits": max_waiters)
    # The consoles' readers and stored output (None: the kernel has no console device).
    console: ConsoleHistory | None = None
    console_followers: ConsoleFollowers | None = None  # its SSE streams, made on the first one
    ready: bool = False
    not_ready_reason: str = "starting: migrations and reconciliation have not run yet"

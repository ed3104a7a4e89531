"""The daemon's long-lived parts, created by the app's lifespan and handed to every service call."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from mkd.backends.base import Backend
from mkd.config import Settings
from mkd.domain.allocation.ledger import Ledger
from mkd.images.store import ImageStore
from mkd.kernel_types import HostInfo
from mkd.services.console_history import ConsoleHistory
from mkd.services.event_bus import EventBus


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
    # The consoles' readers and stored output (None: the kernel has no console device).
    console: ConsoleHistory | None = None
    ready: bool = False
    not_ready_reason: str = "starting: migrations and reconciliation have not run yet"

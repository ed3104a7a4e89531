"""Hand committed events to the live streams."""

from __future__ import annotations

from mkd.db.models import EventRecord
from mkd.services.context import Daemon
from mkd.services.records import to_bus


def publish(daemon: Daemon, events: list[EventRecord]) -> None:
    if events:
        daemon.bus.publish(to_bus(events))
        daemon.signals.notify({str(e.data.get(k)) for e in events for k in ("id", "name") if e.data.get(k) is not None})

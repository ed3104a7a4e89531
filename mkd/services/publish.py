"""Hand committed events to the live streams."""

from __future__ import annotations

from mkd.db.models import EventRecord
from mkd.services.context import Daemon
from mkd.services.records import to_bus


def publish(daemon: Daemon, events: list[EventRecord]) -> None:
    if events:
        daemon.bus.publish(to_bus(events))

"""Hand committed events to the live streams."""

from __future__ import annotations

from mkd.db.models import EventRecord
from mkd.services.context import Daemon
from mkd.services.records import to_bus


def publish(daemon: Daemon, events: list[EventRecord]) -> None:
    # The writer's thread brings the read model up to date (the rows its commit wrote) before
    # anyone hears of the change, so the reads that waited for this write (mkd.api.writes_first)
    # answer from memory instead of each re-reading the rows in a thread of their own.
    daemon.reads.refresh()
    if events:
        daemon.bus.publish(to_bus(events))
        daemon.signals.notify({str(e.data.get(k)) for e in events for k in ("id", "name") if e.data.get(k) is not None})

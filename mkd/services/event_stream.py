"""The event stream: replay from the persisted log after Last-Event-ID, then follow the live bus."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio.to_thread
from sqlmodel import col, func, select

from mkd.db import repository
from mkd.db.models import EventRecord
from mkd.db.session import transaction
from mkd.errors import InvalidInput, OverLimit
from mkd.services.context import Daemon


@dataclass(frozen=True)
class StreamEvent:
    id: int | None
    event: str
    data: str


# ASCII digits only: str.isdigit() also takes "²", which int() then refuses (a 500, issue 11).
_EVENT_ID = re.compile(r"[0-9]{1,18}")
STREAM_RETRY_AFTER_S = 5


def parse_last_event_id(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    if not _EVENT_ID.fullmatch(value.strip()):
        raise InvalidInput(f"Last-Event-ID {value!r} is not an event id (1 to 18 ASCII digits)")
    return int(value.strip())


def check_stream_room(daemon: Daemon) -> None:
    """DESIGN "Limits" max_event_streams: past it, 429 + Retry-After."""
    limit = daemon.settings.limits.max_event_streams
    if daemon.bus.subscribers >= limit:
        raise OverLimit("max_event_streams", f"{limit} event streams are open, the daemon's maximum "
                        "([limits] max_event_streams)", retry_after_s=STREAM_RETRY_AFTER_S)


def _oldest_id(daemon: Daemon) -> int | None:
    with transaction(daemon.engine) as session:
        oldest: int | None = session.exec(select(func.min(EventRecord.id))).one()
        return oldest


def _latest_id(daemon: Daemon) -> int:
    with transaction(daemon.engine) as session:
        latest: int | None = session.exec(select(func.max(EventRecord.id))).one()
        return latest or 0


def _page(daemon: Daemon, after: int) -> list[StreamEvent]:
    with transaction(daemon.engine) as session:
        rows = repository.events_after(session=session, after_id=after, limit=500)
        return [StreamEvent(r.id, r.type, json.dumps(r.data)) for r in rows]


async def stream_events(daemon: Daemon, last_event_id: int | None) -> AsyncIterator[list[StreamEvent]]:
    """DESIGN "Events": no Last-Event-ID → live only; 0 → everything retained; an id older than the
    retention window → `reset` with the oldest id, then everything retained.

    Events come in batches, in order: what was ready when the stream woke up (a replayed page, or
    every live event queued meanwhile) goes out in one write, so a burst costs one send per stream
    rather than one per event and stream (issue 15 item 4)."""
    subscription = daemon.bus.subscribe()
    try:
        if last_event_id is None:
            sent = await anyio.to_thread.run_sync(_latest_id, daemon)
        else:
            sent = last_event_id
            oldest = await anyio.to_thread.run_sync(_oldest_id, daemon)
            if oldest is not None and last_event_id + 1 < oldest:
                yield [StreamEvent(None, "reset", json.dumps({"oldest_id": oldest}))]
                sent = oldest - 1
            while True:
                page = await anyio.to_thread.run_sync(_page, daemon, sent)
                if page:
                    yield page
                    sent = page[-1].id or sent
                if len(page) < 500:
                    break
        while True:
            queued = [await subscription.queue.get()]
            while not subscription.queue.empty():
                queued.append(subscription.queue.get_nowait())
            batch: list[StreamEvent] = []
            ended = False
            for live in queued:
                if live is None:
                    ended = True  # the daemon is shutting down, or this client fell too far behind
                    break
                if live.id <= sent:
                    continue  # already replayed from the log
                if live.id > sent + 1:
                    # Events committed by other threads may reach the bus out of order: fill from the log.
                    for item in await anyio.to_thread.run_sync(_page, daemon, sent):
                        if item.id is not None and item.id <= live.id:
                            batch.append(item)
                            sent = item.id
                    if live.id <= sent:
                        continue
                batch.append(StreamEvent(live.id, live.type, live.data_json))
                sent = live.id
            if batch:
                yield batch
            if ended:
                return
    finally:
        daemon.bus.unsubscribe(subscription)


def prune_events(daemon: Daemon) -> int:
    """Keep the newest `event_retention` events."""
    keep = daemon.settings.daemon.event_retention
    with transaction(daemon.engine) as session:
        latest = session.exec(select(func.max(EventRecord.id))).one() or 0
        cutoff = latest - keep
        if cutoff <= 0:
            return 0
        rows = session.exec(select(EventRecord).where(col(EventRecord.id) <= cutoff)).all()
        for row in rows:
            session.delete(row)
        return len(rows)

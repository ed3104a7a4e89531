"""GET /v1/events: Server-Sent Events (sse-starlette) of state changes and refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from mkd.api.deps import DaemonDep
from mkd.api.responses import problems
from mkd.services.event_stream import check_stream_room, parse_last_event_id, stream_events

router = APIRouter(prefix="/v1", tags=["events"])

HEARTBEAT_S = 15
SEND_TIMEOUT_S = 30  # a client that cannot take an event for this long is disconnected


@router.get("/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **problems(422, 429)})
async def events(
    request: Request, daemon: DaemonDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Stream events; reconnect with Last-Event-ID to get what was missed."""
    after = parse_last_event_id(last_event_id or request.query_params.get("last_event_id"))
    check_stream_room(daemon)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for item in stream_events(daemon, after):
            yield ServerSentEvent(data=item.data, event=item.event,
                                  id=str(item.id) if item.id is not None else None)

    return EventSourceResponse(frames(), ping=HEARTBEAT_S, send_timeout=SEND_TIMEOUT_S)

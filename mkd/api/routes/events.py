"""GET /v1/events: Server-Sent Events (sse-starlette) of state changes and refusals."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from mkd.api.deps import DaemonDep
from mkd.api.responses import problems
from mkd.services.event_stream import StreamEvent, check_stream_room, parse_last_event_id, stream_events

router = APIRouter(prefix="/v1", tags=["events"])

HEARTBEAT_S = 15
SEND_TIMEOUT_S = 30  # a client that cannot take an event for this long is disconnected


# Encoded frames of the latest events, by content (daemons in one process share it): every stream
# sends the same bytes for an event, so each is encoded once however many streams there are.
_FRAMES: OrderedDict[tuple[int, str, str], bytes] = OrderedDict()
MAX_FRAMES = 4096


def frame_of(item: StreamEvent) -> bytes:
    if item.id is None:  # `reset`: per stream
        return ServerSentEvent(data=item.data, event=item.event).encode()
    key = (item.id, item.event, item.data)
    frame = _FRAMES.get(key)
    if frame is None:
        frame = ServerSentEvent(data=item.data, event=item.event, id=str(item.id)).encode()
        _FRAMES[key] = frame
        if len(_FRAMES) > MAX_FRAMES:
            _FRAMES.popitem(last=False)
    return frame


@router.get("/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}}}, **problems(422, 429)})
async def events(
    request: Request, daemon: DaemonDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Stream events; reconnect with Last-Event-ID to get what was missed."""
    after = parse_last_event_id(last_event_id or request.query_params.get("last_event_id"))
    check_stream_room(daemon)

    async def frames() -> AsyncIterator[bytes]:
        async for batch in stream_events(daemon, after):
            yield b"".join(frame_of(item) for item in batch)

    return EventSourceResponse(frames(), ping=HEARTBEAT_S, send_timeout=SEND_TIMEOUT_S)

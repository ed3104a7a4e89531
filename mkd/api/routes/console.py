"""GET · POST /v1/instances/{ref}/console: the instance's console as SSE (sse-starlette) or text,
and input for it (DESIGN "Desired state": Console)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import PlainTextResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from mkd.api.deps import DaemonDep, read_body
from mkd.api.responses import problems
from mkd.services.console_stream import (
    INPUT_BYTES,
    console_text,
    open_console_stream,
    parse_offset,
    send_console_input,
)

router = APIRouter(prefix="/v1/instances/{ref}", tags=["console"])

HEARTBEAT_S = 15
SEND_TIMEOUT_S = 30  # a client that cannot take an event for this long is disconnected

_INPUT_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string",
                                                                            "maxLength": INPUT_BYTES}}}}
}


@router.get("/console", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}, "text/plain": {}}},
                       **problems(404, 409, 422, 429)})
async def console(
    ref: str, request: Request, daemon: DaemonDep,
    follow: Annotated[bool, Query(description="false: the kept history as text/plain")] = True,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> Response:
    """Stream the console: `event: line`, `data` the line without its end, `id` the console's
    byte offset just past it (global across boots: resume with Last-Event-ID; 0 is everything
    kept). Without one, from the start of the current boot."""
    if not follow:
        text = await anyio.to_thread.run_sync(console_text, daemon, ref)
        return PlainTextResponse(text)
    after = parse_offset(last_event_id or request.query_params.get("last_event_id"))
    lines = await open_console_stream(daemon, ref, after)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for line in lines:
            yield ServerSentEvent(data=line.text, event="line", id=str(line.offset))

    return EventSourceResponse(frames(), ping=HEARTBEAT_S, send_timeout=SEND_TIMEOUT_S)


@router.post("/console", status_code=202, openapi_extra=_INPUT_BODY,
             responses={202: {"content": {"application/json": {"schema": {
                 "type": "object", "properties": {"accepted": {"type": "integer"}}}}}},
                 **problems(404, 409, 413, 422)})
async def console_input(ref: str, request: Request, daemon: DaemonDep) -> dict[str, int]:
    """Send text to the instance's console (spec 8.8.3): 202 with the bytes the kernel took."""
    data = await read_body(request, INPUT_BYTES)
    accepted = await anyio.to_thread.run_sync(send_console_input, daemon, ref, data)
    return {"accepted": accepted}

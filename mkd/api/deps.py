"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from mkd.errors import NotReady, PayloadTooLarge
from mkd.services.context import Daemon


def get_daemon(request: Request) -> Daemon:
    daemon: Daemon | None = getattr(request.app.state, "daemon", None)
    if daemon is None or not daemon.ready:
        reason = daemon.not_ready_reason if daemon else request.app.state.not_ready_reason
        raise NotReady(reason, headers={"Retry-After": "1"})
    return daemon


DaemonDep = Annotated[Daemon, Depends(get_daemon)]
IfMatch = Annotated[str | None, Header(alias="If-Match")]


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)

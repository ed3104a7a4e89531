"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from mkd.errors import NotReady, PayloadTooLarge
from mkd.fleet.surface import FleetNotConfigured, FleetSurface
from mkd.services.context import Daemon


def ready_daemon(request: Request) -> Daemon:
    daemon: Daemon | None = getattr(request.app.state, "daemon", None)
    if daemon is None or not daemon.ready:
        reason = daemon.not_ready_reason if daemon else request.app.state.not_ready_reason
        raise NotReady(reason, headers={"Retry-After": "1"})
    return daemon


async def get_daemon(request: Request) -> Daemon:
    # async: a plain def dependency would cost every request a worker thread hand-off.
    return ready_daemon(request)


DaemonDep = Annotated[Daemon, Depends(get_daemon)]


def get_fleet(request: Request) -> FleetSurface:
    """The fleet this daemon belongs to; without `[fleet]` the fleet routes answer 404."""
    fleet: FleetSurface | None = getattr(request.app.state, "fleet", None)
    if fleet is None:
        raise FleetNotConfigured()
    return fleet


FleetDep = Annotated[FleetSurface, Depends(get_fleet)]


async def get_reading_daemon(request: Request) -> Daemon:
    """The daemon with its read model current: re-read off the event loop only after a commit
    changed something (mkd.services.read_model); otherwise no thread hand-off at all."""
    daemon = ready_daemon(request)
    if not daemon.reads.current:
        await run_in_threadpool(daemon.reads.refresh)
    return daemon


ReadingDaemonDep = Annotated[Daemon, Depends(get_reading_daemon)]
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

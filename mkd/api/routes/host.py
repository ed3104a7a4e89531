"""GET /v1/host: backend, kernel profile, capabilities, topology."""

from __future__ import annotations

from fastapi import APIRouter, Response

from mkd.api.deps import DaemonDep
from mkd.api.prebuilt import host_body, json_response
from mkd.api.responses import problems
from mkd.api.schemas import HostOut

router = APIRouter(prefix="/v1", tags=["host"])


@router.get("/host", response_model=HostOut, responses=problems(503))
async def read_host(daemon: DaemonDep) -> Response:
    """Describe the machine and the kernel behind the daemon."""
    body, etag = host_body(daemon.host)
    return json_response(body, etag)

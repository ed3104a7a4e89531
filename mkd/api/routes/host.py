"""GET /v1/host: backend, kernel profile, capabilities, topology."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response

from mkd.api.deps import DaemonDep
from mkd.api.responses import problems
from mkd.api.schemas import HostOut
from mkd.etags import etag_of_json

router = APIRouter(prefix="/v1", tags=["host"])


@router.get("/host", response_model=HostOut, responses=problems(503))
def read_host(daemon: DaemonDep, response: Response) -> dict[str, Any]:
    """Describe the machine and the kernel behind the daemon."""
    host = asdict(daemon.host)
    response.headers["ETag"] = etag_of_json(host)
    return host

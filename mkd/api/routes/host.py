"""GET /v1/host: backend, kernel profile, capabilities, topology."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from mkd.api.deps import DaemonDep
from mkd.api.responses import problems
from mkd.api.schemas import HostOut

router = APIRouter(prefix="/v1", tags=["host"])


@router.get("/host", response_model=HostOut, responses=problems(503))
def read_host(daemon: DaemonDep) -> dict[str, Any]:
    """Describe the machine and the kernel behind the daemon."""
    return asdict(daemon.host)

"""Liveness, readiness, and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from mkd.metrics import render_metrics

router = APIRouter(tags=["health"])


# async: probes must not wait for a worker thread behind slow requests (DESIGN "Limits").
@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready, with the reason"}})
async def readyz(request: Request) -> Response:
    """Ready once migrations and the start-up reconciliation are done."""
    daemon = getattr(request.app.state, "daemon", None)
    if daemon is None or not daemon.ready:
        reason = daemon.not_ready_reason if daemon else request.app.state.not_ready_reason
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503,
                            headers={"Retry-After": "1"})
    return JSONResponse({"status": "ready"})


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus exposition (mkd_ prefix)."""
    fleet = getattr(request.app.state, "fleet", None)
    body, content_type = render_metrics(getattr(request.app.state, "daemon", None),
                                        request.app.state.request_metrics.registry,
                                        request.app.state.limit_refusals.registry,
                                        *([fleet.registry] if fleet is not None else []))
    return Response(body, media_type=content_type)

"""Start-up builds FastAPI's per-route contexts (mkd.api.route_warmup), so the first request
does not; the warm-up runs no handler and no middleware."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRouter
from fastapi.testclient import TestClient

from mkd.api.route_warmup import warm_routes
from tests.conftest import MakeClient


def included_routers(client: TestClient) -> list[Any]:
    return [route for route in client.app.router.routes  # type: ignore[attr-defined]
            if isinstance(getattr(route, "original_router", None), APIRouter)]


def test_start_up_has_built_every_included_routers_candidates(make_client: MakeClient) -> None:
    client = make_client(pool=None)
    routers = included_routers(client)
    assert len(routers) >= 10  # health, host, pool, instances, ... dashboard
    version_key = "_effective_candidates_version"
    built = [route for route in routers
             if getattr(route, version_key, None) == route.original_router._get_routes_version()]
    assert built == routers


def test_the_warm_up_is_neither_audited_nor_counted(make_client: MakeClient) -> None:
    client = make_client(pool=None)
    assert warm_routes(client.app) == len(client.app.router.routes)  # type: ignore[arg-type]
    metrics = client.get("/metrics").text
    assert "route-warmup" not in metrics
    state_dir = client.app.state.settings.daemon.state_dir  # type: ignore[attr-defined]
    audit = state_dir / "audit.log"
    assert not audit.exists() or "route-warmup" not in audit.read_text()

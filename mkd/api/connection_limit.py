"""Past `max_connections` busy connections the server still reads each request's headers (under
the header timeout) and marks the request; this answers it: `/healthz` and `/readyz` as usual,
everything else 503 + Retry-After (DESIGN "Limits"). The marking is the server protocol's
(mkd.cli.bounded_http), which sees every connection; this keeps the answer a problem+json."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from mkd.api.limit_refusals import LimitRefusals
from mkd.api.problems import problem_response
from mkd.errors import OverLimit

OVER_CONNECTION_LIMIT = "mkd.over_connection_limit"  # scope key the protocol sets
PROBES = ("/healthz", "/readyz")
RETRY_AFTER_S = 1


class ConnectionLimitGuard:
    def __init__(self, app: ASGIApp, refusals: LimitRefusals) -> None:
        self.app = app
        self.refusals = refusals

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get(OVER_CONNECTION_LIMIT) or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        self.refusals.hit("max_connections")
        error = OverLimit("max_connections", "the daemon is serving its maximum of busy connections; retry "
                          "shortly (the unix socket is not limited)", status=503, retry_after_s=RETRY_AFTER_S)
        headers = {**error.headers, "Connection": "close"}
        await problem_response(error.problem(scope["path"]), headers)(scope, receive, send)

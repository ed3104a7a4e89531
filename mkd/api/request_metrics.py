"""Count and time HTTP requests per route template for /metrics (mkd_http_*)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("mkd_http_requests", "HTTP requests by route template and status",
                                ["method", "route", "status"], registry=self.registry)
        self.seconds = Histogram("mkd_http_request_seconds", "Time to the response's first byte",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30))


class RequestMetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = scope.get("route")
                # The template, not the raw path: ids and hashes must not become label values.
                template = getattr(route, "path", None) or "unmatched"
                method = scope["method"]
                self.metrics.requests.labels(method, template, str(message["status"])).inc()
                self.metrics.seconds.labels(method, template).observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, observe)

"""Count and time HTTP requests per route template for /metrics (mkd_http_*)."""

from __future__ import annotations

import time
from typing import Any

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
        # The labelled children, found once per label set (labels() costs a lock and a tuple build).
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

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
                status = message["status"]
                counted = self._counted.get((method, template, status))
                if counted is None:
                    counted = self._counted[(method, template, status)] = self.metrics.requests.labels(
                        method, template, str(status))
                timed = self._timed.get((method, template))
                if timed is None:
                    timed = self._timed[(method, template)] = self.metrics.seconds.labels(method, template)
                counted.inc()
                timed.observe(time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, observe)

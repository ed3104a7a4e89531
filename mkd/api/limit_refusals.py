"""Count every refusal or closed connection past a `[limits]` setting (DESIGN "Limits": "counted in
/metrics"): one counter, labelled by the setting's name."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter
from starlette.types import Scope

from mkd.errors import MkdError, OverLimit


class LimitRefusals:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.counter = Counter("mkd_limit_refusals", "Requests refused or connections closed past a [limits] setting",
                               ["limit"], registry=self.registry)

    def hit(self, limit: str) -> None:
        self.counter.labels(limit).inc()


def count_refusal(scope: Scope, error: MkdError) -> None:
    """Count `error` when it is a limit's refusal (for paths that answer outside the app's handlers)."""
    app = scope.get("app")
    refusals: LimitRefusals | None = getattr(getattr(app, "state", None), "limit_refusals", None)
    if isinstance(error, OverLimit) and refusals is not None:
        refusals.hit(error.limit)

"""The reconciler's metrics (DESIGN "Desired state"): queue depth, pass duration, restarts and
CrashLoops by instance. One registry per daemon, rendered by /metrics beside the others."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ReconcilerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.queue = Gauge("mkd_reconciler_queue_depth", "Declared instances waiting for a reconcile pass",
                           registry=self.registry)
        self.duration = Histogram("mkd_reconcile_seconds", "Duration of one reconcile pass", registry=self.registry,
                                  buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60))
        self.restarts = Counter("mkd_restarts", "Restarts of declared instances after a crash", ["instance"],
                                registry=self.registry)
        self.crash_loops = Counter("mkd_crash_loops", "Declared instances that went into CrashLoop", ["instance"],
                                   registry=self.registry)

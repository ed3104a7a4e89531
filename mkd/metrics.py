"""Prometheus metrics (mkd_ prefix), gathered from the records at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import select

from mkd.db.models import InstanceRecord
from mkd.db.session import transaction
from mkd.domain.states import InstanceState

if TYPE_CHECKING:
    from mkd.services.context import Daemon


class DaemonCollector(Collector):
    def __init__(self, daemon: Daemon | None) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ready = GaugeMetricFamily("mkd_ready", "1 when the daemon has reconciled and serves requests")
        ready.add_metric([], 1.0 if self.daemon is not None and self.daemon.ready else 0.0)
        yield ready
        if self.daemon is None or not self.daemon.ready:
            return
        daemon = self.daemon
        by_state = GaugeMetricFamily("mkd_instances", "Instances by daemon state", labels=["state"])
        with transaction(daemon.engine) as session:
            counts = Counter(session.exec(select(InstanceRecord.state)).all())
        for state in InstanceState:
            by_state.add_metric([state.value], float(counts.get(state.value, 0)))
        yield by_state
        pool = daemon.backend.read_pool()
        free = GaugeMetricFamily("mkd_pool_free_memory_bytes", "Free multikernel pool memory")
        free.add_metric([], float(pool.free_memory_bytes))
        yield free
        cpus = GaugeMetricFamily("mkd_pool_free_cpus", "Free CPUs in the multikernel pool")
        cpus.add_metric([], float(len(pool.free_cpus)))
        yield cpus
        streams = GaugeMetricFamily("mkd_event_streams", "Open Server-Sent Events streams")
        streams.add_metric([], float(daemon.bus.subscribers))
        yield streams


def render_metrics(daemon: Daemon | None, *registries: CollectorRegistry) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(daemon))
    if daemon is not None:
        registries = (*registries, daemon.desired_metrics.registry)
    return generate_latest(registry) + b"".join(generate_latest(r) for r in registries), CONTENT_TYPE_LATEST

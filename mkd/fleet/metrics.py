"""The fleet's metrics (DESIGN "Fleet"): leadership, placements and etcd round-trip time. One
registry per daemon with `[fleet]`, rendered by /metrics beside the others, and the instances
this node holds fenced."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class FleetMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.leader = Gauge("mkd_fleet_leader", "1 while this daemon's scheduler leads the fleet",
                            registry=self.registry)
        self.placements = Counter("mkd_fleet_placements", "Instances this daemon's scheduler placed",
                                  registry=self.registry)
        self.lost_compares = Counter("mkd_fleet_placement_conflicts",
                                     "Placement transactions whose comparison failed (another writer came first)",
                                     registry=self.registry)
        self.fenced = Gauge("mkd_fleet_fenced_instances",
                            "Fleet instances this node holds fenced (force-stopped while it had no lease)",
                            registry=self.registry)
        self.etcd_round_trip = Histogram("mkd_fleet_etcd_round_trip_seconds", "Time of one etcd request",
                                         registry=self.registry,
                                         buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5))

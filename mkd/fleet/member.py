"""This daemon as a member of a fleet (DESIGN "Fleet"): the etcd client, the FleetSurface the
routes call, the node agent and, with `scheduler = true`, a scheduler that campaigns to lead.

Created only when `[fleet]` is configured (app.py imports this module then and only then)."""

from __future__ import annotations

import logging

import anyio
import anyio.abc
from prometheus_client import CollectorRegistry

from mkd.config import FleetSettings, Settings
from mkd.fleet.agent import NodeAgent
from mkd.fleet.etcd import EtcdClient, EtcdError, EtcdTls, EtcdUnavailable
from mkd.fleet.keys import FleetKeys
from mkd.fleet.metrics import FleetMetrics
from mkd.fleet.operations import FleetOperations
from mkd.fleet.scheduler import Scheduler
from mkd.fleet.store import FleetStore
from mkd.services.context import Daemon

log = logging.getLogger("mkd.fleet")


def etcd_client(fleet: FleetSettings, metrics: FleetMetrics) -> EtcdClient:
    tls = None
    if fleet.tls_ca is not None or fleet.tls_cert is not None:
        tls = EtcdTls(cert=fleet.tls_cert, key=fleet.tls_key, ca=fleet.tls_ca)
    return EtcdClient(fleet.endpoints, timeout_s=fleet.request_timeout_s, tls=tls,
                      observe_round_trip=metrics.etcd_round_trip.observe)


class FleetMember(FleetOperations):
    """The FleetSurface of this daemon, and the tasks that make it a node of the fleet."""

    def __init__(self, settings: Settings) -> None:
        if settings.fleet is None:
            raise ValueError("FleetMember needs [fleet]")
        self.settings = settings
        self.fleet = settings.fleet
        self.metrics = FleetMetrics()
        self.agent: NodeAgent | None = None
        self.scheduler: Scheduler | None = None
        super().__init__(FleetStore(etcd_client(self.fleet, self.metrics), FleetKeys(self.fleet.prefix)))

    @property
    def registry(self) -> CollectorRegistry:
        """What /metrics renders of the fleet."""
        return self.metrics.registry

    async def prepare(self, daemon: Daemon) -> None:
        """Before the daemon serves: stop what is placed elsewhere (NodeAgent.prepare)."""
        self.agent = NodeAgent(daemon, self.store, self.settings, self.metrics)
        await self.agent.prepare()

    def start(self, daemon: Daemon, tasks: anyio.abc.TaskGroup) -> None:
        """Run the node agent (and the scheduler's campaign) in the app's task group."""
        if self.agent is None:
            self.agent = NodeAgent(daemon, self.store, self.settings, self.metrics)
        tasks.start_soon(self.agent.run)
        if self.fleet.scheduler:
            self.scheduler = Scheduler(self.store, node=self.fleet.node, lease_ttl_s=self.fleet.lease_ttl_s,
                                       fence_grace_s=self.fleet.fence_grace_s,
                                       strategy=self.fleet.strategy, metrics=self.metrics)
            tasks.start_soon(self.scheduler.run)

    async def close(self) -> None:
        """The node's own lease is left to expire (its instances keep running while the daemon
        is away); the scheduler's is given up, so another daemon leads at once."""
        if self.scheduler is not None:
            with anyio.move_on_after(self.fleet.request_timeout_s):
                try:
                    await self.scheduler.resign()
                except (EtcdError, EtcdUnavailable) as exc:
                    log.warning("giving up the scheduler's lease: %s", exc)
        await self.store.client.close()

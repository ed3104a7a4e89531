"""The fleet's keyspace in etcd, read and written as documents (DESIGN "Fleet", keys).

Everything here speaks in names and JSON documents; etcd's failures become FleetUnavailable
(503 with Retry-After), so neither the routes nor the agent see the client's exceptions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from mkd.fleet.etcd import EtcdClient, EtcdError, EtcdUnavailable, Json, KeyValue, range_op
from mkd.fleet.keys import FleetKeys
from mkd.fleet.placement import Booking
from mkd.fleet.surface import FleetUnavailable


def dumps(document: Any) -> bytes:
    """Documents are stored canonically, so the same document is the same bytes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@asynccontextmanager
async def answering(what: str) -> AsyncIterator[None]:
    """Turn etcd's silence into the 503 DESIGN asks for."""
    try:
        yield
    except EtcdUnavailable as exc:
        raise FleetUnavailable(f"{what}: {exc}") from exc
    except EtcdError as exc:
        raise FleetUnavailable(f"{what}: {exc}", retry_after_s=1) from exc


@dataclass
class Allocation:
    """allocations/<node>: what the leader booked there, and the key's revision (0: absent)."""

    bookings: dict[str, Booking] = field(default_factory=dict)
    revision: int = 0

    def json(self) -> dict[str, Any]:
        return {"instances": {name: b.json() for name, b in sorted(self.bookings.items())}}

    @classmethod
    def of(cls, kv: KeyValue) -> Allocation:
        raw = kv.json().get("instances", {})
        return cls({name: Booking.of(b) for name, b in raw.items()}, kv.mod_revision)


@dataclass
class FleetView:
    """The whole keyspace the scheduler needs, read at one revision."""

    revision: int
    nodes: dict[str, dict[str, Any]]
    cordons: set[str]
    instances: dict[str, KeyValue]
    placements: dict[str, KeyValue]
    allocations: dict[str, Allocation]
    statuses: dict[str, dict[str, Any]]


class ViewCache:
    """The scheduler's view, kept up to date by reading only what changed since the last read.

    One transaction reads, for each kind of key, the keys modified after the cached revision and
    how many keys the kind holds now; a count other than the cache's means something was deleted,
    and the whole view is read again. A round gets a copy it may change."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self._revision = 0
        self._kinds = (store.keys.nodes, store.keys.cordons, store.keys.instances, store.keys.placements,
                       store.keys.allocations)
        self._raw: dict[str, dict[str, KeyValue]] = {}
        self.full_reads = 0

    async def read(self) -> FleetView:
        keys = self.store.keys
        if self._revision:
            ops: list[Json] = []
            for kind in self._kinds:
                ops += [range_op(kind, prefix=True, min_mod_revision=self._revision + 1),
                        range_op(kind, prefix=True, count_only=True)]
            async with answering("reading the fleet's changes"):
                result = await self.store.client.txn([], ops)
            complete = True
            for i, kind in enumerate(self._kinds):
                cached = self._raw[kind]
                for kv in result.ranges(2 * i):
                    cached[keys.name_in(kind, kv.key)] = kv
                complete &= result.count(2 * i + 1) == len(cached)
            if complete:
                self._revision = result.revision
                return self._view()
        await self._read_all()
        return self._view()

    async def _read_all(self) -> None:
        keys = self.store.keys
        async with answering("reading the fleet"):
            result = await self.store.client.txn([], [range_op(kind, prefix=True) for kind in self._kinds])
        self._raw = {kind: {keys.name_in(kind, kv.key): kv for kv in result.ranges(i)}
                     for i, kind in enumerate(self._kinds)}
        self._revision = result.revision
        self.full_reads += 1

    def _view(self) -> FleetView:
        nodes, cordons, instances, placements, allocations = (self._raw[kind] for kind in self._kinds)
        return FleetView(revision=self._revision, nodes={n: kv.json() for n, kv in nodes.items()},
                         cordons=set(cordons), instances=dict(instances), placements=dict(placements),
                         allocations={n: Allocation.of(kv) for n, kv in allocations.items()}, statuses={})


@dataclass
class InstanceView:
    instance: KeyValue
    placement: dict[str, Any] | None
    status: dict[str, Any] | None
    node_live: bool


class FleetStore:
    def __init__(self, client: EtcdClient, keys: FleetKeys) -> None:
        self.client = client
        self.keys = keys

    async def view(self, *, statuses: bool = True) -> FleetView:
        """Nodes, cordons, instances, placements, allocations and (unless told not to: the
        scheduler needs none) statuses at one revision."""
        keys = self.keys
        kinds = [keys.nodes, keys.cordons, keys.instances, keys.placements, keys.allocations]
        if statuses:
            kinds.append(keys.statuses)
        async with answering("reading the fleet"):
            result = await self.client.txn([], [range_op(kind, prefix=True) for kind in kinds])
        nodes, cordons, instances, placements, allocations = (result.ranges(i) for i in range(5))
        statuses_kv = result.ranges(5) if statuses else []
        return FleetView(
            revision=result.revision,
            nodes={keys.name_in(keys.nodes, kv.key): kv.json() for kv in nodes},
            cordons={keys.name_in(keys.cordons, kv.key) for kv in cordons},
            instances={keys.name_in(keys.instances, kv.key): kv for kv in instances},
            placements={keys.name_in(keys.placements, kv.key): kv for kv in placements},
            allocations={keys.name_in(keys.allocations, kv.key): Allocation.of(kv) for kv in allocations},
            statuses={keys.name_in(keys.statuses, kv.key): kv.json() for kv in statuses_kv},
        )

    async def instance(self, name: str) -> InstanceView | None:
        """One instance with its placement, status and whether its node is alive: two reads,
        whatever the size of the fleet."""
        keys = self.keys
        async with answering(f"reading instance {name}"):
            result = await self.client.txn([], [range_op(keys.instance(name)), range_op(keys.placement(name)),
                                                range_op(keys.status(name))])
            found, placement, status = (result.ranges(i) for i in range(3))
            if not found:
                return None
            node = placement[0].json().get("node") if placement else None
            live = node is not None and await self.client.get(keys.node(str(node))) is not None
        return InstanceView(found[0], placement[0].json() if placement else None,
                            status[0].json() if status else None, live)

    async def get_json(self, key: str) -> tuple[Any, int] | None:
        async with answering(f"reading {key}"):
            found = await self.client.get(key)
        return (found.json(), found.mod_revision) if found is not None else None

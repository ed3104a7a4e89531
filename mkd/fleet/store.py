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

from mkd.fleet.etcd import EtcdClient, EtcdError, EtcdUnavailable, KeyValue, range_op
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


class FleetStore:
    def __init__(self, client: EtcdClient, keys: FleetKeys) -> None:
        self.client = client
        self.keys = keys

    async def view(self) -> FleetView:
        """Nodes, cordons, instances, placements, allocations and statuses at one revision."""
        keys = self.keys
        kinds = (keys.nodes, keys.cordons, keys.instances, keys.placements, keys.allocations, keys.statuses)
        async with answering("reading the fleet"):
            result = await self.client.txn([], [range_op(kind, prefix=True) for kind in kinds])
        nodes, cordons, instances, placements, allocations, statuses = (result.ranges(i) for i in range(len(kinds)))
        return FleetView(
            revision=result.revision,
            nodes={keys.name_in(keys.nodes, kv.key): kv.json() for kv in nodes},
            cordons={keys.name_in(keys.cordons, kv.key) for kv in cordons},
            instances={keys.name_in(keys.instances, kv.key): kv for kv in instances},
            placements={keys.name_in(keys.placements, kv.key): kv for kv in placements},
            allocations={keys.name_in(keys.allocations, kv.key): Allocation.of(kv) for kv in allocations},
            statuses={keys.name_in(keys.statuses, kv.key): kv.json() for kv in statuses},
        )

    async def get_json(self, key: str) -> tuple[Any, int] | None:
        async with answering(f"reading {key}"):
            found = await self.client.get(key)
        return (found.json(), found.mod_revision) if found is not None else None

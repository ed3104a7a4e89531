"""What `/v1/fleet/*` does (the FleetSurface): every write goes to etcd, never to a peer."""

from __future__ import annotations

import datetime
from typing import Any

from mkd.errors import Conflict, NotFound
from mkd.fleet.documents import fleet_document, is_deleting
from mkd.fleet.etcd import delete_op, mod_is, put_op
from mkd.fleet.phase import status_of
from mkd.fleet.store import FleetStore, FleetView, answering, dumps
from mkd.fleet.surface import Document

WRITE_ATTEMPTS = 5  # a compare that lost to a concurrent writer is read again and retried


def _with_status(view: FleetView, name: str) -> Document:
    kv = view.instances[name]
    placement = view.placements.get(name)
    document: Document = kv.json()
    document["status"] = status_of(placement.json() if placement else None, view.statuses.get(name), view.nodes)
    return document


def _node_record(view: FleetView, node: str) -> Document:
    record = view.nodes.get(node)
    if record is None:
        if node not in view.cordons and node not in view.allocations:
            raise NotFound(f"no fleet node {node!r}")
        record = {"name": node}
    return {**record, "cordoned": node in view.cordons, "live": node in view.nodes}


class FleetOperations:
    """The FleetSurface over a FleetStore."""

    def __init__(self, store: FleetStore) -> None:
        self.store = store
        self.keys = store.keys

    async def nodes(self) -> list[Document]:
        view = await self.store.view()
        names = sorted(set(view.nodes) | view.cordons)
        return [_node_record(view, name) for name in names]

    async def instances(self) -> list[Document]:
        view = await self.store.view()
        return [_with_status(view, name) for name in sorted(view.instances)]

    async def get_instance(self, name: str) -> Document:
        found = await self.store.instance(name)
        if found is None:
            raise NotFound(f"no fleet instance {name!r}")
        document: Document = found.instance.json()
        live = [found.placement["node"]] if found.placement is not None and found.node_live else []
        document["status"] = status_of(found.placement, found.status, live)
        return document

    async def put_instance(self, name: str, document: Document) -> tuple[Document, bool]:
        stored = fleet_document(name, document)
        key = self.keys.instance(name)
        for _ in range(WRITE_ATTEMPTS):
            found = await self.store.get_json(key)
            if found is not None and is_deleting(found[0]):
                raise Conflict(f"fleet instance {name!r} is being deleted", extra={"errno": "EBUSY"})
            if found is not None and found[0] == stored:
                return await self.get_instance(name), False  # the same document: idempotent
            async with answering(f"writing {key}"):
                result = await self.store.client.txn([mod_is(key, "=", found[1] if found else 0)],
                                                     [put_op(key, dumps(stored))])
            if result.succeeded:
                return await self.get_instance(name), found is None
        raise Conflict(f"fleet instance {name!r} kept changing under this write; try again")

    async def delete_instance(self, name: str) -> Document:
        """Unplaced: gone at once. Placed: marked, and the owning node drives it down."""
        key = self.keys.instance(name)
        for _ in range(WRITE_ATTEMPTS):
            found = await self.store.get_json(key)
            if found is None:
                raise NotFound(f"no fleet instance {name!r}")
            document, revision = found
            if is_deleting(document):
                return await self.get_instance(name)
            placement = self.keys.placement(name)
            async with answering(f"deleting {key}"):
                gone = await self.store.client.txn(
                    [mod_is(key, "=", revision), mod_is(placement, "=", 0)],
                    [delete_op(key), delete_op(self.keys.status(name))])
                if gone.succeeded:
                    return {**document, "status": {"node": None, "phase": "Pending", "deleted": True}}
                document["metadata"]["deletionTimestamp"] = datetime.datetime.now(datetime.UTC).isoformat()
                marked = await self.store.client.txn([mod_is(key, "=", revision)], [put_op(key, dumps(document))])
            if marked.succeeded:
                return await self.get_instance(name)
        raise Conflict(f"fleet instance {name!r} kept changing under this delete; try again")

    async def drain(self, node: str) -> Document:
        """Cordon, evict what may move (reschedule: OnNodeLoss); 409 naming what cannot."""
        async with answering(f"cordoning {node}"):
            await self.store.client.put(self.keys.cordon(node), dumps({"node": node}))
        view = await self.store.view()
        record = _node_record(view, node)
        stuck: list[str] = []
        for name, kv in sorted(view.placements.items()):
            placement: dict[str, Any] = kv.json()
            if placement.get("node") != node or name not in view.instances:
                continue
            spec = view.instances[name].json().get("spec", {})
            if spec.get("reschedule", "Never") != "OnNodeLoss":
                stuck.append(name)
                continue
            if placement.get("evict"):
                continue
            placement["evict"] = True
            async with answering(f"evicting {name}"):
                await self.store.client.txn([mod_is(kv.key, "=", kv.mod_revision)], [put_op(kv.key, dumps(placement))])
        if stuck:
            raise Conflict(f"node {node} is cordoned but cannot be drained: {', '.join(stuck)} "
                           "(reschedule: Never) cannot move", extra={"errno": "EBUSY", "instances": stuck})
        return record

    async def uncordon(self, node: str) -> Document:
        view = await self.store.view()
        record = _node_record(view, node)
        async with answering(f"uncordoning {node}"):
            await self.store.client.delete(self.keys.cordon(node))
        return {**record, "cordoned": False}


def placement_json(node: str, booking: dict[str, Any], instance_revision: int) -> dict[str, Any]:
    """placements/<name>: the node and the placement revision (the instance's, when placed)."""
    return {"node": node, "revision": instance_revision, "booking": booking}

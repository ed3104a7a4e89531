"""The fleet's scheduler (DESIGN "Fleet", Scheduling): every daemon with `scheduler = true`
campaigns for one leader lease; the leader places unplaced instances.

Safety does not rest on there being one leader: each placement is one transaction that
compares the instance's revision, `allocations/<node>`'s revision and that the instance has no
placement yet, and writes the placement and the node's bookings together. Two leaders for a
moment (the first one's lease expiring under it) cannot book a node twice or place an instance
twice: the second transaction's comparison fails and it reads again.

Node loss (DESIGN "Fleet", fencing): an instance whose node holds no lease stays placed there
(`NodeLost`). A `reschedule: OnNodeLoss` one is let go only `fence_grace_s` after the leader saw
the node's lease expire (by then the node, if alive, has fenced it: it stops its OnNodeLoss
instances as soon as its lease goes unrenewed for `lease_ttl_s`), in a transaction that compares
that the node is still absent; the round then places it like any unplaced instance. A leader that
takes over counts the grace from when it first sees the node absent, never less.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial

import anyio

from mkd.fleet.documents import is_deleting
from mkd.fleet.etcd import (
    EtcdError,
    EtcdUnavailable,
    KeyValue,
    WatchEvent,
    delete_op,
    exception_leaves,
    mod_is,
    put_op,
    range_op,
    version_is,
)
from mkd.fleet.metrics import FleetMetrics
from mkd.fleet.operations import placement_json
from mkd.fleet.placement import Booking, Choice, Demand, NodeView, Strategy, place
from mkd.fleet.store import Allocation, FleetStore, FleetView, ViewCache, dumps
from mkd.fleet.surface import FleetUnavailable

log = logging.getLogger("mkd.fleet.scheduler")
PLACE_ATTEMPTS = 4  # per instance and round: a lost comparison re-reads the node and tries again
SETTLE_S = 0.05  # changes that arrive together are placed in one round


@dataclass(frozen=True)
class Queued:
    """An instance decided for a node, waiting for its transaction."""

    name: str
    kv: KeyValue
    booking: Booking


@dataclass
class RoundResult:
    placed: dict[str, str] = field(default_factory=dict)  # instance -> node
    pending: dict[str, str] = field(default_factory=dict)  # instance -> reason
    lost_compares: int = 0
    released: int = 0
    moved: list[str] = field(default_factory=list)  # let go from lost nodes, placed again this round


class Scheduler:
    def __init__(self, store: FleetStore, *, node: str, lease_ttl_s: int, strategy: Strategy,
                 fence_grace_s: float = 5.0, metrics: FleetMetrics | None = None) -> None:
        self.store = store
        self.keys = store.keys
        self.node = node
        self.lease_ttl_s = lease_ttl_s
        self.fence_grace_s = fence_grace_s
        self.absent_since: dict[str, float] = {}  # lost node -> when this leader first saw it absent
        self.next_due: float | None = None  # when a lost node's grace ends (a round then, unasked)
        self.strategy: Strategy = strategy
        self.metrics = metrics
        self.lease = 0
        self._leading = False
        self.placements = 0  # placed since start (a metric)
        self.lost_compares = 0
        self._changed = anyio.Event()
        self._noted: dict[str, str] = {}  # Pending reasons written while leading
        self.view = ViewCache(store)

    @property
    def is_leader(self) -> bool:
        return self._leading

    @is_leader.setter
    def is_leader(self, leading: bool) -> None:
        self._leading = leading
        if self.metrics is not None:
            self.metrics.leader.set(1 if leading else 0)

    # -- leadership ----------------------------------------------------------------------------
    async def campaign(self) -> bool:
        """Try once to take the leader key on a fresh lease; True when this daemon leads."""
        if not self.lease:
            self.lease = await self.store.client.grant(self.lease_ttl_s)
        value = dumps({"node": self.node, "lease": self.lease})
        result = await self.store.client.txn([version_is(self.keys.leader, "=", 0)],
                                             [put_op(self.keys.leader, value, lease=self.lease)],
                                             [range_op(self.keys.leader)])
        # Still ours (a round failed and this daemon campaigns again while its lease holds)?
        held = not result.succeeded and any(kv.lease == self.lease for kv in result.ranges(0))
        self.is_leader = result.succeeded or held
        if self.is_leader:
            self._noted.clear()  # another leader may have written other reasons meanwhile
        return self.is_leader

    async def resign(self) -> None:
        """On a clean shutdown: give the leader key up now rather than after the lease's TTL."""
        lease, self.lease = self.lease, 0
        self.is_leader = False
        if lease:
            await self.store.client.revoke(lease)

    async def _keep_lease(self) -> None:
        """Renew the campaign's lease; when it is gone, leadership is gone with it."""
        interval = max(self.lease_ttl_s / 3, 0.2)
        while True:
            await anyio.sleep(interval)
            try:
                ttl = await self.store.client.keepalive(self.lease)
            except (EtcdUnavailable, EtcdError):
                continue  # the lease may outlive a short outage; if not, the next answer says 0
            if ttl <= 0:
                log.warning("scheduler lease %x expired: no longer leader", self.lease)
                self.is_leader = False
                self.lease = 0
                return

    async def run(self) -> None:
        """Campaign, lead while the lease holds, campaign again."""
        while True:
            try:
                if await self.campaign():
                    log.info("node %s leads the fleet's scheduling", self.node)
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(self._lead, tasks.cancel_scope)
                        await self._keep_lease()
                        tasks.cancel_scope.cancel()
                else:
                    await self._wait_for_vacancy()
            except Exception as exc:  # etcd's failures, raised alone or from the leader's tasks
                leaves = exception_leaves(exc)
                if all(isinstance(leaf, (EtcdUnavailable, EtcdError, FleetUnavailable)) for leaf in leaves):
                    log.warning("scheduler: %s", leaves[0])
                else:  # a bug must not take the daemon down: campaign again
                    log.exception("scheduler failed")
                self.is_leader = False
                if any("lease not found" in str(leaf) for leaf in leaves):
                    self.lease = 0  # expired while etcd was away (quorum lost): campaign on a new one
                await anyio.sleep(1.0)

    async def _wait_for_vacancy(self) -> None:
        found, revision = await self.store.client.range(self.keys.leader)
        if not found:
            return
        async for batch in self.store.client.watch(self.keys.leader, start_revision=revision + 1):
            if any(event.kind == "delete" for event in batch):
                return

    async def _lead(self, scope: anyio.CancelScope) -> None:
        # The changes are followed from before the first round's reads: a change made between
        # those reads and the start of the watch would otherwise wake no round until the next.
        _, revision = await self.store.client.range(self.keys.leader)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._follow_changes, revision)
            while self.is_leader:
                self._changed = anyio.Event()
                try:
                    result = await self.place_round()
                    if result.lost_compares:
                        self._changed.set()  # what lost a comparison is decided again on fresh reads
                except (FleetUnavailable, EtcdUnavailable, EtcdError) as exc:
                    log.warning("placement round: %s", exc)
                    await anyio.sleep(1.0)
                    self._changed.set()
                # Rounds follow changes only (and the end of a lost node's grace): at rest the
                # leader reads nothing (the watch resumes from its last revision after a break, so
                # no change is missed).
                wait_s = None if self.next_due is None else max(self.next_due - time.monotonic(), 0.0)
                with anyio.move_on_after(wait_s):
                    await self._changed.wait()
                await anyio.sleep(SETTLE_S)
            tasks.cancel_scope.cancel()

    async def _follow_changes(self, revision: int) -> None:
        """A round after what can change a placement since `revision`: instances, nodes
        (capacity, arrival, departure), cordons, and placements let go. Statuses, images and the
        leader's own bookings do not wake it."""
        keys = self.keys

        def changed(_batch: list[WatchEvent]) -> None:
            self._changed.set()

        client = self.store.client
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(partial(client.follow, [keys.instances, keys.nodes, keys.cordons],
                                     start_revision=revision + 1, on_batch=changed))
            tasks.start_soon(partial(client.follow, [keys.placements], start_revision=revision + 1,
                                     on_batch=changed, no_puts=True))

    # -- placement -----------------------------------------------------------------------------
    async def place_round(self) -> RoundResult:
        """Place every unplaced instance the view shows, and release what nothing holds.

        Decisions are made one instance at a time, in name order, against the bookings as they
        will be once the decisions before succeed; the transactions then run one at a time per
        node (each compares the revision the previous one left) and in parallel across nodes.
        A lost comparison re-reads that node: a queued instance that still fits there goes on,
        one that does not waits for the next round."""
        view = await self.view.read()
        result = RoundResult()
        await self._let_go_of_lost(view, result)
        await self._release(view, result)
        nodes = [NodeView.of(record, cordoned=name in view.cordons) for name, record in view.nodes.items()]
        unplaced: list[tuple[str, KeyValue]] = []
        for name in sorted(view.instances):
            kv = view.instances[name]
            if is_deleting(kv.json()):
                continue
            if name in view.placements:
                await self._rebook(view, name, kv, nodes, result)
            else:
                unplaced.append((name, kv))
        confirmed = {node: Allocation(dict(a.bookings), a.revision) for node, a in view.allocations.items()}
        queues: dict[str, list[Queued]] = {}
        for name, kv in unplaced:
            demand = Demand.of(kv.json().get("spec", {}))
            choice = place(demand, nodes, {node: a.bookings for node, a in view.allocations.items()}, self.strategy)
            if not isinstance(choice, Choice):
                result.pending[name] = choice.reason
                await self._note_pending(name, choice.reason)
                continue
            view.allocations.setdefault(choice.node, Allocation()).bookings[name] = choice.booking
            queues.setdefault(choice.node, []).append(Queued(name, kv, choice.booking))
        async with anyio.create_task_group() as tasks:
            for node, queued in sorted(queues.items()):
                node_view = next(n for n in nodes if n.name == node)
                tasks.start_soon(self._place_on, node_view, queued, confirmed.get(node, Allocation()), result)
        self.placements += len(result.placed)
        self.lost_compares += result.lost_compares
        if self.metrics is not None:
            self.metrics.placements.inc(len(result.placed))
            self.metrics.lost_compares.inc(result.lost_compares)
        return result

    async def _place_on(self, node: NodeView, queued: list[Queued], allocation: Allocation,
                        result: RoundResult) -> None:
        """The placements decided for one node, one transaction each, in order."""
        allocation_key = self.keys.allocation(node.name)
        for item in queued:
            placement_key = self.keys.placement(item.name)
            for _ in range(PLACE_ATTEMPTS):
                # Decided against the bookings as planned; checked against what is confirmed
                # (after a re-read the two differ): what no longer fits waits for the next round.
                if not self._fits(node, allocation, item.booking):
                    result.lost_compares += 1
                    break
                booked = Allocation({**allocation.bookings, item.name: item.booking}, allocation.revision)
                txn = await self.store.client.txn(
                    [mod_is(item.kv.key, "=", item.kv.mod_revision), mod_is(allocation_key, "=", allocation.revision),
                     mod_is(placement_key, "=", 0)],
                    [put_op(placement_key, dumps(placement_json(node.name, item.booking.json(), item.kv.mod_revision))),
                     put_op(allocation_key, dumps(booked.json())), delete_op(self.keys.status(item.name))])
                if txn.succeeded:
                    allocation = Allocation(booked.bookings, txn.revision)
                    result.placed[item.name] = node.name
                    self._noted.pop(item.name, None)
                    break
                # Someone else wrote first: read the node again and try again if still unplaced.
                result.lost_compares += 1
                allocation, placed = await self._reread(node.name, placement_key)
                if placed:
                    break

    def _fits(self, node: NodeView, allocation: Allocation, booking: Booking) -> bool:
        demand = Demand(booking.cpus, booking.memory_bytes, (booking.numa,))
        return isinstance(place(demand, [node], {node.name: allocation.bookings}, self.strategy), Choice)

    async def _rebook(self, view: FleetView, name: str, kv: KeyValue, nodes: list[NodeView],
                      result: RoundResult) -> None:
        """A placed instance whose resources changed: its booking follows when its node still
        has room (one transaction, as a placement); otherwise the booking stays what it was and
        the node's own engine says why the change does not apply."""
        placement_kv = view.placements[name]
        placement = placement_kv.json()
        if placement.get("revision") == kv.mod_revision or placement.get("evict"):
            return
        node = str(placement["node"])
        allocation = view.allocations.get(node)
        if allocation is None or name not in allocation.bookings:
            return
        demand = Demand.of(kv.json().get("spec", {}))
        current = allocation.bookings[name]
        if (current.cpus, current.memory_bytes) == (demand.cpus, demand.memory_bytes):
            return
        others = {n: b for n, b in allocation.bookings.items() if n != name}
        here = [n for n in nodes if n.name == node]
        choice = place(Demand(demand.cpus, demand.memory_bytes, demand.numa_nodes), here, {node: others}, self.strategy)
        if not isinstance(choice, Choice):
            log.info("instance %s: its new resources do not fit on %s (%s)", name, node, choice.reason)
            return
        rebooked = Allocation({**others, name: choice.booking}, allocation.revision)
        allocation_key = self.keys.allocation(node)
        txn = await self.store.client.txn(
            [mod_is(kv.key, "=", kv.mod_revision), mod_is(allocation_key, "=", allocation.revision),
             mod_is(placement_kv.key, "=", placement_kv.mod_revision)],
            [put_op(placement_kv.key, dumps(placement_json(node, choice.booking.json(), kv.mod_revision))),
             put_op(allocation_key, dumps(rebooked.json()))])
        if txn.succeeded:
            view.allocations[node] = Allocation(rebooked.bookings, txn.revision)
        else:
            result.lost_compares += 1  # the next round reads again

    async def _reread(self, node: str, placement_key: str) -> tuple[Allocation, bool]:
        """The node's allocation now, and whether the instance is placed (or changed) meanwhile."""
        allocation = await self.store.client.get(self.keys.allocation(node))
        placement = await self.store.client.get(placement_key)
        fresh = Allocation.of(allocation) if allocation is not None else Allocation()
        return fresh, placement is not None

    async def _note_pending(self, name: str, reason: str) -> None:
        """Write the reason once per change (a new leader writes each once again)."""
        if self._noted.get(name) != reason:
            # Only while it is unplaced: another leader may have placed it since this round's read.
            await self.store.client.txn([mod_is(self.keys.placement(name), "=", 0)],
                                        [put_op(self.keys.status(name), dumps({"phase": "Pending", "reason": reason}))])
            self._noted[name] = reason

    async def _let_go_of_lost(self, view: FleetView, result: RoundResult) -> None:
        """OnNodeLoss placements on nodes that hold no lease, once `fence_grace_s` has passed since
        the leader saw the node go: deleted (with the node's stale status) if the node is still
        absent, so this round places them again. Never instances stay (NodeLost)."""
        now = time.monotonic()
        placed_on = {str(kv.json().get("node")) for kv in view.placements.values()}
        lost = placed_on - set(view.nodes)
        for node in list(self.absent_since):
            if node not in lost:
                del self.absent_since[node]
        for node in lost:
            self.absent_since.setdefault(node, now)
        self.next_due = None
        for name, kv in sorted(view.placements.items()):
            placement = kv.json()
            node = str(placement.get("node"))
            instance = view.instances.get(name)
            if node not in lost or instance is None or is_deleting(instance.json()):
                continue
            if instance.json().get("spec", {}).get("reschedule") != "OnNodeLoss":
                continue
            due = self.absent_since[node] + self.fence_grace_s
            if due > now:
                self.next_due = due if self.next_due is None else min(self.next_due, due)
                continue
            txn = await self.store.client.txn(
                [mod_is(kv.key, "=", kv.mod_revision), version_is(self.keys.node(node), "=", 0)],
                [delete_op(kv.key), delete_op(self.keys.status(name))])
            if txn.succeeded:
                log.warning("instance %s: node %s lost for %.1f s: placing it again", name, node,
                            now - self.absent_since[node])
                view.placements.pop(name, None)
                result.moved.append(name)
            else:
                result.lost_compares += 1  # the node came back, or the placement changed: read again

    async def _release(self, view: FleetView, result: RoundResult) -> None:
        """Bookings whose placement is gone (evicted and driven down, or the instance deleted)
        and placements whose instance is gone: free them, each node in one transaction."""
        for node, allocation in sorted(view.allocations.items()):
            orphans: list[str] = []
            for name in sorted(allocation.bookings):
                placement = view.placements.get(name)
                on_node = placement is not None and placement.json().get("node") == node
                if not on_node or name not in view.instances:
                    orphans.append(name)
            if not orphans:
                continue
            kept = Allocation({n: b for n, b in allocation.bookings.items() if n not in orphans}, allocation.revision)
            compares = [mod_is(self.keys.allocation(node), "=", allocation.revision)]
            ops = [put_op(self.keys.allocation(node), dumps(kept.json()))]
            for name in orphans:
                placement = view.placements.get(name)
                if placement is not None and name not in view.instances and placement.json().get("node") == node:
                    compares.append(mod_is(placement.key, "=", placement.mod_revision))
                    ops.append(delete_op(placement.key))
            txn = await self.store.client.txn(compares, ops)
            if txn.succeeded:
                view.allocations[node] = Allocation(kept.bookings, txn.revision)
                for name in orphans:
                    if name not in view.instances:
                        view.placements.pop(name, None)
                result.released += len(orphans)
            else:
                result.lost_compares += 1



def bookings_of(view: FleetView) -> dict[str, dict[str, Booking]]:
    """Every node's bookings as the view shows them (tests check no node is over capacity)."""
    return {node: dict(alloc.bookings) for node, alloc in view.allocations.items()}

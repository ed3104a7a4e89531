"""The node agent (DESIGN "Fleet"): this daemon's presence in the fleet.

- registers `nodes/<node>` on a lease of `lease_ttl_s` and renews it;
- rewrites the record when its capacity changes (woken by the daemon's events, not a timer);
- watches `placements/` and `instances/` and hands each instance placed here to the local
  desired-state engine, owned by the fleet; drives down what is deleted or evicted;
- publishes `status/<name>` from the local instance, and advertises its images
  (`images/<sha256>/<node>`, on the lease, so they vanish with the node).

Fencing (DESIGN "Fleet", fencing; mkd.services.fleet_fencing): a guard force-stops and holds the
node's `OnNodeLoss` instances as soon as its lease has not been renewed for `lease_ttl_s` (etcd
unreachable, or the lease expired or revoked); `Never` instances keep running through any outage.
A session (register, read the placements, act) starts over after a lost lease, so what the node
believes it holds is read again at the revision after its new lease: every fleet instance whose
placement is not its own is stopped first, and a fenced one is released only once the node holds
a lease and the placement again. Before the daemon serves (`prepare`), the same is done by etcd or,
without etcd, by the placements stored last (mkd.fleet.last_placements).
"""

from __future__ import annotations

import logging
import platform
import time
from importlib.metadata import version
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from mkd.config import Settings
from mkd.errors import MkdError, NotFound
from mkd.fleet.documents import declared_spec, is_deleting
from mkd.fleet.etcd import EtcdError, EtcdUnavailable, WatchEvent, delete_op, exception_leaves, mod_is
from mkd.fleet.last_placements import LastPlacements
from mkd.fleet.metrics import FleetMetrics
from mkd.fleet.phase import Phase
from mkd.fleet.store import FleetStore, dumps
from mkd.fleet.surface import FleetUnavailable
from mkd.services import fleet_fencing, fleet_node
from mkd.services.context import Daemon
from mkd.services.signals import ANY

log = logging.getLogger("mkd.fleet.agent")
SETTLE_S = 0.05
RETRY_S = 1.0
RETRY_FAILED_S = 5.0
TERMINAL_REASONS = {"CrashLoop", "Unsupported"}
GUARD_S = 0.1  # how often the guard looks at the lease's age (and re-checks fenced instances)


class LeaseLost(Exception):
    """The node's lease expired, was revoked, or went unrenewed for its TTL: the session starts over."""



def phase_of(document: dict[str, Any]) -> Phase:
    status = document.get("status") or {}
    if status.get("state") == "FAILED" or any(
            c.get("status") == "False" and c.get("reason") in TERMINAL_REASONS for c in status.get("conditions") or []):
        return "Failed"
    if status.get("state") == "ACTIVE":
        return "Running"
    return "Placed"


class NodeAgent:
    def __init__(self, daemon: Daemon, store: FleetStore, settings: Settings,
                 metrics: FleetMetrics | None = None) -> None:
        assert settings.fleet is not None
        self.daemon = daemon
        self.store = store
        self.keys = store.keys
        self.fleet = settings.fleet
        self.node = settings.fleet.node
        self.url = settings.advertise_url
        self.metrics = metrics
        self.lease = 0
        self.renewed_at = 0.0  # monotonic: when the last grant or renewal that etcd answered was sent
        self.last = LastPlacements(settings.daemon.state_dir, self.node)
        self._prepared: int | None = None  # the revision `prepare` read, for the first session
        self.registered: dict[str, Any] | None = None
        self.placements: dict[str, dict[str, Any]] = {}  # name -> placement, for this node
        self.documents: dict[str, dict[str, Any]] = {}  # name -> fleet document, for those placed here
        self.published: dict[str, dict[str, Any]] = {}  # name -> status last written
        self.advertised: set[str] = set()
        self._dirty: set[str] = set()
        self._wake = anyio.Event()
        self._failed: dict[str, float] = {}  # name -> when its last sync failed (retried later)

    # -- the node record, its lease and its images ---------------------------------------------
    def record(self, capacity: dict[str, Any]) -> dict[str, Any]:
        host = self.daemon.host
        simulated = self.daemon.backend.name != "host"
        return {"name": self.node, "url": self.url, "profile": host.kernel_profile,
                "arch": self.daemon.settings.simulator.arch if simulated else platform.machine(),
                "capabilities": dict(host.capabilities), "labels": dict(self.fleet.labels), "capacity": capacity,
                "cordoned": False, "version": version("mkd")}

    async def register(self) -> None:
        """A fresh lease and the node record (and image adverts) on it."""
        sent = time.monotonic()
        self.lease = await self.store.client.grant(self.fleet.lease_ttl_s)
        self.renewed_at = sent
        self.registered = None
        self.advertised = set()
        self.published = {}  # written again: what was published before a lapse may be stale
        await self.publish_record()
        await self.advertise_images()
        log.info("node %s registered on lease %x", self.node, self.lease)

    async def publish_record(self) -> None:
        record = self.record(await run_in_threadpool(fleet_node.capacity, self.daemon))
        if record != self.registered:
            await self.store.client.put(self.keys.node(self.node), dumps(record), lease=self.lease)
            self.registered = record

    async def advertise_images(self) -> None:
        digests = set(await run_in_threadpool(fleet_node.image_digests, self.daemon))
        for sha in sorted(digests - self.advertised):
            await self.store.client.put(self.keys.image(sha, self.node), dumps({"url": self.url}), lease=self.lease)
        for sha in sorted(self.advertised - digests):
            await self.store.client.delete(self.keys.image(sha, self.node))
        self.advertised = digests

    def holds_lease(self) -> bool:
        """A lease etcd renewed less than `lease_ttl_s` ago (by this node's clock, from when the
        renewal was sent: etcd counts its TTL from no earlier than that)."""
        return self.lease != 0 and time.monotonic() - self.renewed_at < self.fleet.lease_ttl_s

    async def on_lease_lost(self, why: str) -> None:
        """The lease is gone: fence at once, then start a session over (a new lease, the
        placements read again)."""
        log.warning("node %s lost its lease %x (%s): fencing, then registering again", self.node, self.lease, why)
        self.lease = 0
        await self.fence_movable(f"the node's lease was lost ({why})")
        raise LeaseLost(why)

    async def keep_lease(self) -> None:
        interval = max(self.fleet.lease_ttl_s / 3, 0.2)
        while True:
            await anyio.sleep(interval)
            sent = time.monotonic()
            try:
                ttl = await self.store.client.keepalive(self.lease)
            except (EtcdUnavailable, EtcdError) as exc:
                log.warning("lease renewal: %s", exc)
                continue
            if ttl <= 0:
                await self.on_lease_lost("expired or revoked")
            if not self.holds_lease():
                # Renewed, but only after the guard saw it lapse and fenced: read everything again.
                await self.on_lease_lost(f"not renewed for {self.fleet.lease_ttl_s} s")
            self.renewed_at = sent

    # -- fencing ---------------------------------------------------------------------------------
    async def fence(self, names: set[str], why: str) -> None:
        if names:
            await run_in_threadpool(fleet_fencing.fence, self.daemon, names, why)
        await self._count_fenced()

    async def fence_movable(self, why: str) -> None:
        await self.fence(await run_in_threadpool(fleet_fencing.movable, self.daemon), why)

    async def _count_fenced(self) -> None:
        if self.metrics is not None:
            self.metrics.fenced.set(len(await run_in_threadpool(fleet_fencing.fenced, self.daemon)))

    async def guard(self) -> None:
        """While the lease is not held (lapsed, lost, or not yet granted): the OnNodeLoss
        instances are fenced, and kept so (what a reconciler pass started meanwhile is stopped)."""
        ttl = self.fleet.lease_ttl_s
        while True:
            if not self.holds_lease():
                try:
                    await self.fence_movable(f"the node's lease was not renewed for {ttl} s")
                except Exception:  # the guard must outlive one failed pass
                    log.exception("fencing failed")
            await anyio.sleep(GUARD_S)

    # -- following the daemon and the fleet ------------------------------------------------------
    async def follow_local_changes(self) -> None:
        """Capacity and statuses change with the daemon's own changes, which all signal (events,
        conditions the reconciler records, the pool, the image store): no polling."""
        changed = self.daemon.signals.watch([ANY])
        try:
            while True:
                await changed.wait()
                changed.clear()
                self._wake.set()
        finally:
            self.daemon.signals.unwatch([ANY], changed)

    async def follow_fleet(self, start_revision: int) -> None:
        """Placements and instance documents (not the fleet's statuses, nor its images)."""
        keys = self.keys
        await self.store.client.follow([keys.placements, keys.instances], start_revision=start_revision,
                                       on_batch=self._fleet_changed)

    def _fleet_changed(self, batch: list[WatchEvent]) -> None:
        keys = self.keys
        for event in batch:
            key = event.kv.key
            if key.startswith(keys.placements):
                name = keys.name_in(keys.placements, key)
                placement = event.kv.json() if event.kind == "put" else None
                if placement is not None and placement.get("node") == self.node:
                    self.placements[name] = placement
                    self._dirty.add(name)
                elif name in self.placements:
                    del self.placements[name]
                    self._dirty.add(name)
            elif key.startswith(keys.instances):
                name = keys.name_in(keys.instances, key)
                if event.kind == "put":
                    self.documents[name] = event.kv.json()
                else:
                    self.documents.pop(name, None)
                if name in self.placements:
                    self._dirty.add(name)
        if self._dirty:
            self._wake.set()

    async def load(self) -> int:
        """Read this node's placements and their documents (store them, fence what is here but
        placed elsewhere); the revision to watch from."""
        view = await self.store.view(statuses=False)
        placements = {name: kv.json() for name, kv in view.placements.items()}
        self.placements = {name: p for name, p in placements.items() if p.get("node") == self.node}
        self.documents = {name: kv.json() for name, kv in view.instances.items()}
        await run_in_threadpool(self.last.save, dict(self.placements))
        local = await run_in_threadpool(fleet_node.fleet_instances, self.daemon)
        await self.fence(set(local) - set(self.placements), "its placement is not this node's")
        self._dirty = set(self.placements) | set(local)
        return view.revision

    async def start_session(self) -> int:
        """Register on a fresh lease, then read the placements: a placement the leader moved
        before the new lease shows here; after it, the move (which needs this node absent) fails."""
        await self.register()
        return await self.load()

    async def prepare(self) -> None:
        """Before the daemon serves: stop every fleet instance whose placement is not this node's,
        by etcd when it answers within `request_timeout_s`, else by the placements stored last
        (and the OnNodeLoss ones are fenced by the guard until a lease is held)."""
        stored = await run_in_threadpool(self.last.load)
        local = await run_in_threadpool(fleet_node.fleet_instances, self.daemon)
        await self.fence(set(local) - set(stored), "its placement was not this node's when etcd was last heard")
        try:
            with anyio.fail_after(self.fleet.request_timeout_s):
                self._prepared = await self.start_session()
        except (EtcdUnavailable, EtcdError, FleetUnavailable, TimeoutError) as exc:
            log.warning("etcd did not answer at start (%s): fencing the OnNodeLoss instances", exc)
            self.lease = 0
            await self.fence_movable("etcd did not answer at start")

    # -- making this node what the fleet says -----------------------------------------------------
    async def sync(self, name: str) -> None:
        placement = self.placements.get(name)
        document = self.documents.get(name)
        if placement is None or document is None or is_deleting(document) or placement.get("evict"):
            gone = await run_in_threadpool(fleet_node.remove_fleet_instance, self.daemon, name)
            if gone and placement is not None:
                await self._release(name, placement, document)
            return
        spec = document.get("spec", {})
        movable = spec.get("reschedule") == "OnNodeLoss"
        if movable and not self.holds_lease():
            return  # the next session (with a lease) applies it
        missing = [sha for sha in (spec.get("kernel"), spec.get("initrd")) if sha
                   and not await run_in_threadpool(fleet_node.has_image, self.daemon, sha)]
        if missing and not await self._pull(missing):
            raise NotFound(f"image {missing[0]} is neither here nor on a live peer")
        labels = dict(document.get("metadata", {}).get("labels") or {})
        declared = declared_spec(spec)
        await run_in_threadpool(fleet_node.apply_fleet_instance, self.daemon, name, labels, declared,
                                str(spec.get("reschedule") or "Never"))
        if self.holds_lease() and await run_in_threadpool(fleet_fencing.unfence, self.daemon, name):
            await self._count_fenced()

    async def _release(self, name: str, placement: dict[str, Any], document: dict[str, Any] | None) -> None:
        """The local instance is gone: end what the fleet holds of it (the leader frees the booking)."""
        key = self.keys.placement(name)
        found = await self.store.client.get(key)
        if found is None or found.json().get("node") != self.node:
            return
        if document is not None and is_deleting(document):
            await self.store.client.txn([mod_is(key, "=", found.mod_revision)],
                                        [delete_op(self.keys.instance(name)), delete_op(self.keys.status(name))])
        elif placement.get("evict"):
            await self.store.client.txn([mod_is(key, "=", found.mod_revision)],
                                        [delete_op(key), delete_op(self.keys.status(name))])
        self.published.pop(name, None)

    async def _pull(self, missing: list[str]) -> bool:
        """Fetch images from peers that advertise them (mkd.fleet.image_pull)."""
        try:
            from mkd.fleet.image_pull import pull_image  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return False
        for sha in missing:
            holders, _ = await self.store.client.range(self.keys.image_holders(sha), prefix=True)
            peers = [kv.json()["url"] for kv in holders if not kv.key.endswith("/" + self.node)]
            if not peers:
                return False
            await pull_image(sha, peers, self._peer_token(), daemon=self.daemon)
        await self.advertise_images()
        return True

    def _peer_token(self) -> str | None:
        path = self.fleet.peer_token_file
        return path.read_text().strip() if path is not None else None

    async def _publish(self, name: str, status: dict[str, Any]) -> None:
        status = {"node": self.node, **status}
        if self.published.get(name) != status and name in self.placements:
            await self.store.client.put(self.keys.status(name), dumps(status))
            self.published[name] = status

    async def publish_statuses(self, names: set[str]) -> None:
        local = await run_in_threadpool(fleet_node.fleet_instances, self.daemon)
        for name in sorted(names):
            document = local.get(name)
            if document is None or name not in self.placements:
                continue
            status = document["status"]
            await self._publish(name, {"phase": phase_of(document), "state": status.get("state"),
                                       "id": status.get("id"), "conditions": status.get("conditions") or [],
                                       "generation": status.get("generation"),
                                       "observed_generation": status.get("observed_generation")})

    async def work(self) -> None:
        """Apply what changed, then publish statuses, capacity and images (each written only
        when it differs from what was written last); one pass at a time."""
        while True:
            await self._wake.wait()
            await anyio.sleep(SETTLE_S)
            self._wake = anyio.Event()
            dirty, self._dirty = self._dirty | self.leaving() | self._due_retries(), set()
            try:
                await run_in_threadpool(self.last.save, dict(self.placements))  # before acting on them
                for name in sorted(dirty):
                    await self._sync_one(name)
                await self.publish_statuses(set(self.placements))
                await self.publish_record()
                await self.advertise_images()
            except (EtcdUnavailable, EtcdError) as exc:
                log.warning("publishing to the fleet: %s", exc)
                self._dirty |= dirty
                await anyio.sleep(RETRY_S)
                self._wake.set()

    def leaving(self) -> set[str]:
        """Placed here but deleted or evicted: checked on every pass until gone here."""
        return {name for name, placement in self.placements.items()
                if placement.get("evict") or is_deleting(self.documents.get(name) or {})}

    def _due_retries(self) -> set[str]:
        """Instances whose last sync failed (an image no peer had, a refusal of the local
        engine): tried again on a pass at least RETRY_FAILED_S later, while still placed here."""
        now = time.monotonic()
        return {name for name, at in self._failed.items() if now - at >= RETRY_FAILED_S and name in self.placements}

    async def _sync_one(self, name: str) -> None:
        try:
            await self.sync(name)
            self._failed.pop(name, None)
        except MkdError as exc:
            log.warning("fleet instance %s: %s", name, exc.detail)
            self._failed[name] = time.monotonic()
            await self._publish(name, {"phase": "Failed", "reason": exc.detail})
        except (EtcdUnavailable, EtcdError):
            self._dirty.add(name)
            raise
        except Exception as exc:  # a bug for one instance must not stop the agent for all
            log.exception("fleet instance %s", name)
            self._failed[name] = time.monotonic()
            await self._publish(name, {"phase": "Failed", "reason": f"{type(exc).__name__}: {exc}"})

    async def run(self) -> None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.guard)
            while True:
                try:
                    revision = self._prepared if self._prepared is not None else await self.start_session()
                    self._prepared = None
                    async with anyio.create_task_group() as tasks:
                        tasks.start_soon(self.keep_lease)
                        tasks.start_soon(self.follow_local_changes)
                        tasks.start_soon(self.follow_fleet, revision + 1)
                        tasks.start_soon(self.work)
                        self._wake.set()
                except Exception as exc:  # the daemon serves on; the agent starts over
                    self._prepared = None
                    leaves = exception_leaves(exc)
                    if any(isinstance(leaf, LeaseLost) for leaf in leaves):
                        continue
                    if all(isinstance(leaf, (EtcdUnavailable, EtcdError, FleetUnavailable)) for leaf in leaves):
                        log.warning("fleet agent: %s; registering again", leaves[0])
                    else:
                        log.exception("fleet agent failed; registering again")
                    await anyio.sleep(RETRY_S)

"""The simulated kernel's state: a SQLite database (StateStore), one row per instance.

The database is the kernel's memory: it survives a daemon restart. Each operation is one SQLite
transaction writing only what it changed, so a killed daemon leaves either the old or the new
state, and an operation costs the same with 2,047 instances as with 10. A state written for
another machine or kernel generation (settings changed) is a reboot: it is dropped and the
kernel starts empty. The JSON shapes below are the rows' (and the whole-state file's that
earlier releases wrote, which is taken over once).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mkd.backends.simulated.global_pool import GlobalPool, PoolChunk, Ram
from mkd.backends.simulated.model import (
    InstanceRecord,
    KernelModel,
    KimageRecord,
    OverlayOp,
    OverlayTx,
    SpawnRecord,
    VirtioDevice,
)
from mkd.backends.simulated.states import KState
from mkd.config import SimulatorSettings
from mkd.kernel_types import Kimage, PoolSpec, Segment
from mkd.kexec.mem_pool import GenPool
from mkd.kexec.segments import SegmentSource

FORMAT = 1


def boot_signature(settings: SimulatorSettings) -> dict[str, Any]:
    """What identifies one boot of the simulated machine: change any of it and state is lost."""
    return {
        "kernel_profile": settings.kernel_profile,
        "arch": settings.arch,
        "cpus": settings.cpus,
        "numa_nodes": settings.numa_nodes,
        "pool_base": settings.pool_base,
        "pool_bytes": settings.pool_bytes,
    }


def _pairs(items: list[tuple[int, int]]) -> list[list[int]]:
    return [[a, b] for a, b in items]


def _kimage_to_json(record: KimageRecord) -> dict[str, Any]:
    return {
        "mk_id": record.mk_id,
        "kimage": asdict(record.kimage),
        "sources": [source.to_json() for source in record.sources],
        "pool_allocations": _pairs(record.pool_allocations),
        "control_pages": [[a, s, p] for a, s, p in record.control_pages],
        "kernel_pages": [[kind, a, s] for kind, a, s in record.kernel_pages],
        "nr_segments": record.nr_segments,
        "cmdline": record.cmdline.hex(),
    }


def _kimage_from_json(data: dict[str, Any]) -> KimageRecord:
    raw = dict(data["kimage"])
    raw["segments"] = tuple(Segment(**seg) for seg in raw["segments"])
    return KimageRecord(
        mk_id=int(data["mk_id"]),
        kimage=Kimage(**raw),
        sources=[SegmentSource.from_json(source) for source in data["sources"]],
        pool_allocations=[(int(a), int(s)) for a, s in data["pool_allocations"]],
        control_pages=[(int(a), int(s), bool(p)) for a, s, p in data["control_pages"]],
        kernel_pages=[(str(kind), int(a), int(s)) for kind, a, s in data.get("kernel_pages", [])],
        nr_segments=int(data["nr_segments"]),
        cmdline=bytes.fromhex(data["cmdline"]),
    )


def _instance_to_json(inst: InstanceRecord) -> dict[str, Any]:
    return {
        "id": inst.id,
        "name": inst.name,
        "state": int(inst.state),
        "cpus": inst.cpus,
        "chunks": _pairs(inst.chunks),
        "pool": inst.pool.to_json(),
        "llc_way_mask": inst.llc_way_mask,
        "devices": inst.devices,
        "numa_node": inst.numa_node,
        "kimage": None if inst.kimage is None else _kimage_to_json(inst.kimage),
        "dangling_kimage": inst.dangling_kimage,
        "failure": inst.failure,
        "spawn": None if inst.spawn is None else _spawn_to_json(inst.spawn),
        "virtio": [asdict(device) for device in inst.virtio],
    }


def _spawn_to_json(spawn: SpawnRecord) -> dict[str, Any]:
    data = asdict(spawn)
    data["boot_tree"] = spawn.boot_tree.hex()
    return data


def _spawn_from_json(data: dict[str, Any]) -> SpawnRecord:
    fields = dict(data)
    fields["boot_tree"] = bytes.fromhex(fields.get("boot_tree", ""))
    return SpawnRecord(**fields)


def _instance_from_json(data: dict[str, Any]) -> InstanceRecord:
    spawn = data["spawn"]
    return InstanceRecord(
        id=int(data["id"]),
        name=data["name"],
        state=KState(int(data["state"])),
        cpus=[int(c) for c in data["cpus"]],
        chunks=[(int(a), int(s)) for a, s in data["chunks"]],
        pool=GenPool.from_json(data["pool"]),
        llc_way_mask=data["llc_way_mask"],
        devices=list(data["devices"]),
        numa_node=data["numa_node"],
        kimage=None if data["kimage"] is None else _kimage_from_json(data["kimage"]),
        dangling_kimage=bool(data["dangling_kimage"]),
        failure=data["failure"],
        spawn=None if spawn is None else _spawn_from_json(spawn),
        virtio=[VirtioDevice(**device) for device in data.get("virtio", [])],
    )


def _overlay_op_to_json(op: OverlayOp) -> dict[str, Any]:
    return {
        "kind": op.kind,
        "target": op.target,
        "instance": op.instance,
        "cpu": op.cpu,
        "device": op.device,
        "chunks": [[base, size, node] for base, size, node in op.chunks],
    }


def _overlay_op_from_json(data: dict[str, Any]) -> OverlayOp:
    return OverlayOp(
        kind=data["kind"],
        target=data["target"],
        instance=data["instance"],
        cpu=data["cpu"],
        device=data["device"],
        chunks=[(int(base), int(size), node) for base, size, node in data["chunks"]],
    )


def _overlay_tx_to_json(tx: OverlayTx) -> dict[str, Any]:
    return {
        "id": tx.id,
        "status": tx.status,
        "instance": tx.instance,
        "resources": tx.resources,
        "dtbo": tx.dtbo.hex(),
        "applied": [_overlay_op_to_json(op) for op in tx.applied],
        "error": tx.error,
    }


def _overlay_tx_from_json(data: dict[str, Any]) -> OverlayTx:
    return OverlayTx(
        id=int(data["id"]),
        status=data["status"],
        instance=data["instance"],
        resources=data["resources"],
        dtbo=bytes.fromhex(data["dtbo"]),
        applied=[_overlay_op_from_json(op) for op in data["applied"]],
        error=data["error"],
    )


def _pool_spec_json(spec: PoolSpec) -> dict[str, Any]:
    # By hand: asdict() deep-copies a 1,000-CPU tuple element by element on every save.
    return {"cpus": list(spec.cpus), "memory_base": spec.memory_base, "memory_bytes": spec.memory_bytes,
            "llc_way_mask": spec.llc_way_mask, "devices": list(spec.devices)}


def model_to_json(
    model: KernelModel, settings: SimulatorSettings, *, with_instances: bool = True, with_overlays: bool = True
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "boot": boot_signature(settings),
        "profile": model.profile,
        "pool": {
            "spec": None if model.pool_spec is None else _pool_spec_json(model.pool_spec),
            "chunks": [
                {"base": c.base, "size": c.size, "node": c.node, "allocator": c.allocator.to_json()}
                for c in model.pool.chunks
            ],
            "cpus": model.pool_cpus,
            "devices": model.pool_devices,
            "llc_way_mask": model.pool_llc_way_mask,
            "aliases": model.pool_aliases,
        },
        "ram": None if model.ram is None else [node.to_json() for node in model.ram.nodes],
        "instances": [_instance_to_json(inst) for inst in sorted(model.instances.values(), key=lambda i: i.id)]
        if with_instances
        else [],
        "kexec_image_slot": model.kexec_image_slot,
        "next_tx": model.next_tx,
        "overlays": [_overlay_tx_to_json(tx) for _, tx in sorted(model.overlays.items())] if with_overlays else [],
    }


def model_from_json(data: dict[str, Any]) -> KernelModel:
    pool = data["pool"]
    spec = pool["spec"]
    ram_data = data["ram"]
    ram = None if ram_data is None else Ram([GenPool.from_json(node) for node in ram_data])
    model = KernelModel(
        profile=data["profile"],
        pool=GlobalPool(
            [
                PoolChunk(int(c["base"]), int(c["size"]), c["node"], GenPool.from_json(c["allocator"]))
                for c in pool["chunks"]
            ]
        ),
        ram=ram,
        pool_spec=None
        if spec is None
        else PoolSpec(
            cpus=tuple(spec["cpus"]),
            memory_base=int(spec["memory_base"]),
            memory_bytes=int(spec["memory_bytes"]),
            llc_way_mask=spec["llc_way_mask"],
            devices=tuple(spec["devices"]),
        ),
        pool_cpus=[int(c) for c in pool["cpus"]],
        pool_devices=list(pool["devices"]),
        pool_llc_way_mask=pool["llc_way_mask"],
        pool_aliases=dict(pool.get("aliases", {})),
        kexec_image_slot=data["kexec_image_slot"],
        next_tx=int(data["next_tx"]),
        # state files written before overlays were modelled have none
        overlays={int(tx["id"]): _overlay_tx_from_json(tx) for tx in data.get("overlays", [])},
    )
    for inst_data in data["instances"]:
        inst = _instance_from_json(inst_data)
        model.instances[inst.id] = inst
    return model


def _legacy_document(path: Path) -> dict[str, Any] | None:
    """The whole-state JSON file earlier releases wrote (simkernel.json), if there is one."""
    try:
        with open(path, encoding="utf-8") as fh:
            data: dict[str, Any] = json.load(fh)
    except FileNotFoundError:
        return None
    except ValueError:  # torn or foreign: the kernel it described is gone
        return {}
    return data


def _current(data: dict[str, Any], settings: SimulatorSettings) -> bool:
    return data.get("format") == FORMAT and data.get("boot") == boot_signature(settings)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS head (id INTEGER PRIMARY KEY CHECK (id = 0), doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS instances (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS overlays (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);
"""


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class StateStore:
    """The kernel's state in SQLite: one row for what is not per instance (the head: boot
    signature, pools, counters), one per instance, one per overlay transaction.

    A mutation writes, in one transaction, only the rows whose JSON changed: the instances it
    names (`touched`; None means any, then each is compared with what was written), the head when
    it differs, new or changed transactions. So an operation costs what it changes, not the size
    of the machine. The commit is the atomic step (WAL, synchronous=FULL): a killed daemon
    leaves the state before or after each operation, never a mix.
    """

    def __init__(self, path: Path, settings: SimulatorSettings) -> None:
        self.path = path
        self.settings = settings
        path.parent.mkdir(parents=True, exist_ok=True)
        # The kernel's lock serialises every call; the connection moves between its threads.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        # What the database holds, as written: a save compares against these, not the disk.
        self._head = ""
        self._instances: dict[int, str] = {}
        # tx id -> (what of it can still change, its JSON): a transaction's blob and ops are fixed
        # once written, only its status, error and op list move (rollback), so 1,000 overlays are
        # not re-encoded on every write.
        self._txs: dict[int, tuple[tuple[str, str | None, int], str]] = {}

    def load(self) -> KernelModel | None:
        """The persisted model, or None when there is none for this boot of the machine (then
        the store is emptied: that kernel is gone). A whole-state JSON file of earlier releases
        beside the database is taken over once, then removed."""
        legacy_path = self.path.with_suffix(".json")
        legacy = _legacy_document(legacy_path)
        if legacy is not None:
            model = model_from_json(legacy) if _current(legacy, self.settings) else None
            self._write_all(model)  # a reboot when the file is for another boot
            legacy_path.unlink()
            return model
        document = self.document()
        if document is None or not _current(document, self.settings):
            self._write_all(None)
            return None
        model = model_from_json(document)
        self._remember(model)
        return model

    def document(self) -> dict[str, Any] | None:
        """The stored state as one document (model_to_json's shape), or None when empty."""
        row = self._db.execute("SELECT doc FROM head").fetchone()
        if row is None:
            return None
        document: dict[str, Any] = json.loads(row[0])
        for table in ("instances", "overlays"):
            document[table] = [json.loads(doc) for (doc,) in self._db.execute(f"SELECT doc FROM {table} ORDER BY id")]
        return document

    def _remember(self, model: KernelModel) -> None:
        self._head = _dumps(model_to_json(model, self.settings, with_instances=False, with_overlays=False))
        self._instances = {i: _dumps(_instance_to_json(inst)) for i, inst in model.instances.items()}
        self._txs = {tx_id: ((tx.status, tx.error, len(tx.applied)), _dumps(_overlay_tx_to_json(tx)))
                     for tx_id, tx in model.overlays.items()}

    def _write_all(self, model: KernelModel | None) -> None:
        """Replace everything: the model, or nothing (reboot)."""
        with self._transaction() as db:
            for table in ("head", "instances", "overlays"):
                db.execute(f"DELETE FROM {table}")
            self._head, self._instances, self._txs = "", {}, {}
            if model is not None:
                self._remember(model)
                db.execute("INSERT INTO head VALUES (0, ?)", (self._head,))
                db.executemany("INSERT INTO instances VALUES (?, ?)", sorted(self._instances.items()))
                db.executemany("INSERT INTO overlays VALUES (?, ?)",
                               sorted((tx_id, doc) for tx_id, (_, doc) in self._txs.items()))

    def save(self, model: KernelModel, touched: Collection[int] | None) -> None:
        """Write what the mutation changed. `touched`: ids of the instances it may have changed;
        None means any."""
        head = _dumps(model_to_json(model, self.settings, with_instances=False, with_overlays=False))
        candidates = model.instances.keys() if touched is None else touched
        instances: dict[int, str | None] = {}
        for instance_id in candidates:
            inst = model.instances.get(instance_id)
            doc = None if inst is None else _dumps(_instance_to_json(inst))
            if doc != self._instances.get(instance_id):
                instances[instance_id] = doc
        for instance_id in self._instances.keys() - model.instances.keys():
            instances[instance_id] = None
        txs: dict[int, tuple[tuple[str, str | None, int], str] | None] = {}
        for tx_id, tx in model.overlays.items():
            mutable = (tx.status, tx.error, len(tx.applied))
            cached = self._txs.get(tx_id)
            if cached is None or cached[0] != mutable:
                txs[tx_id] = (mutable, _dumps(_overlay_tx_to_json(tx)))
        for tx_id in self._txs.keys() - model.overlays.keys():
            txs[tx_id] = None
        if head == self._head and not instances and not txs:
            return
        with self._transaction() as db:
            if head != self._head:
                db.execute("INSERT OR REPLACE INTO head VALUES (0, ?)", (head,))
            for instance_id, doc in instances.items():
                if doc is None:
                    db.execute("DELETE FROM instances WHERE id = ?", (instance_id,))
                else:
                    db.execute("INSERT OR REPLACE INTO instances VALUES (?, ?)", (instance_id, doc))
            for tx_id, entry in txs.items():
                if entry is None:
                    db.execute("DELETE FROM overlays WHERE id = ?", (tx_id,))
                else:
                    db.execute("INSERT OR REPLACE INTO overlays VALUES (?, ?)", (tx_id, entry[1]))
        # Only once committed: a failed write leaves these saying what the disk holds.
        self._head = head
        for instance_id, doc in instances.items():
            if doc is None:
                self._instances.pop(instance_id, None)
            else:
                self._instances[instance_id] = doc
        for tx_id, entry in txs.items():
            if entry is None:
                self._txs.pop(tx_id, None)
            else:
                self._txs[tx_id] = entry

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


def stored_document(path: Path, settings: SimulatorSettings) -> dict[str, Any]:
    """What the database at `path` holds, as one document (for tests and inspection)."""
    store = StateStore(path, settings)
    try:
        document = store.document()
    finally:
        store.close()
    if document is None:
        raise FileNotFoundError(f"no simulated kernel state in {path}")
    return document

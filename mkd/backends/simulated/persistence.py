"""The simulated kernel's state as one JSON document, written atomically.

The file is the kernel's memory: it survives a daemon restart. It is replaced with
tmp file + fsync + os.replace, so a killed daemon leaves either the old or the new state.
A file written for another machine or kernel generation (settings changed) is a reboot:
it is ignored and the kernel starts empty.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
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


def load_model(path: Path, settings: SimulatorSettings) -> KernelModel | None:
    """The persisted model, or None when there is none for this boot of the machine."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    if data.get("format") != FORMAT or data.get("boot") != boot_signature(settings):
        return None
    return model_from_json(data)


def save_model(path: Path, model: KernelModel, settings: SimulatorSettings) -> None:
    """Write the whole state atomically: tmp file in the same directory, fsync, rename, fsync dir."""
    _write_atomically(path, json.dumps(model_to_json(model, settings), separators=(",", ":")).encode("utf-8"))


class StateFile:
    """Writes the state once per mutation, re-serialising only the instances the mutation touched,
    so a create costs the same with 1,000 instances as with 10."""

    def __init__(self, path: Path, settings: SimulatorSettings) -> None:
        self.path = path
        self.settings = settings
        self._fragments: dict[int, str] = {}
        # tx id -> (what of it can still change, its JSON): a transaction's blob and ops are fixed
        # once written, only its status, error and op list move (rollback), so 1,000 overlays are
        # not re-encoded on every write.
        self._tx_fragments: dict[int, tuple[tuple[str, str | None, int], str]] = {}

    def save(self, model: KernelModel, touched: Collection[int] | None) -> None:
        """`touched`: ids of the instances the mutation may have changed; None means any."""
        if touched is None:
            self._fragments.clear()
        else:
            for instance_id in touched:
                self._fragments.pop(instance_id, None)
        fragments: dict[int, str] = {}
        for instance_id in sorted(model.instances):
            fragment = self._fragments.get(instance_id)
            if fragment is None:
                fragment = json.dumps(_instance_to_json(model.instances[instance_id]), separators=(",", ":"))
            fragments[instance_id] = fragment
        self._fragments = fragments
        document = model_to_json(model, self.settings, with_instances=False, with_overlays=False)
        head = json.dumps(document, separators=(",", ":"))
        for marker, parts in (('"instances":[]', fragments.values()), ('"overlays":[]', self._tx_json(model))):
            at = head.index(marker) + len(marker) - 1
            head = head[:at] + ",".join(parts) + head[at:]
        _write_atomically(self.path, head.encode("utf-8"))

    def _tx_json(self, model: KernelModel) -> list[str]:
        kept: dict[int, tuple[tuple[str, str | None, int], str]] = {}
        for tx_id, tx in sorted(model.overlays.items()):
            mutable = (tx.status, tx.error, len(tx.applied))
            cached = self._tx_fragments.get(tx_id)
            if cached is None or cached[0] != mutable:
                cached = (mutable, json.dumps(_overlay_tx_to_json(tx), separators=(",", ":")))
            kept[tx_id] = cached
        self._tx_fragments = kept
        return [fragment for _, fragment in kept.values()]


def _write_atomically(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)

"""/sys/fs/multikernel/overlays (tree only, spec 5.4): `new`, the tx_<N> directories, rollback.

A write to `new` that passes the size and header checks always creates a transaction and
succeeds; applying it may fail, which only its `status` shows. rfc-v2 has no overlays
directory: the kernel entry points answer ENOENT there, as a path lookup would.
"""

from __future__ import annotations

import errno
import logging
import re

from mkd.backends.simulated.dt_blob import check_header, einval, node_properties, read_string
from mkd.backends.simulated.model import OverlayTx
from mkd.backends.simulated.overlay_ops import RESOURCES, OpContext, Target, apply_op, undo_op
from mkd.backends.simulated.sysfs_dt import baseline_applied
from mkd.devicetree.fdt import DtNode, open_dtb
from mkd.errors import KernelError
from mkd.kernel_types import MAX_DT_WRITE_BYTES

log = logging.getLogger(__name__)

# spec 5.4 per-fragment op order, by target
INSTANCE_OP_ORDER = (
    "instance-create",
    "memory-remove",
    "memory-add",
    "cpu-remove",
    "cpu-add",
    "device-remove",
    "device-add",
    "instance-remove",
)
RESOURCES_OP_ORDER = (
    "instance-create",
    "cpu-remove",
    "device-remove",
    "memory-remove",
    "memory-add",
    "cpu-add",
    "device-add",
    "instance-remove",
)
_HEX = re.compile(r"[0-9a-fA-F]+")
UNKNOWN = "unknown"


def new_transaction(ctx: OpContext, data: bytes, offset: int) -> OverlayTx:
    """A write to overlays/new: refusals create nothing; otherwise tx_<N> exists whatever happens."""
    if offset != 0:
        raise einval("overlays/new is written in one piece at offset 0")
    if not data:
        raise einval("an empty overlay")
    if len(data) > MAX_DT_WRITE_BYTES:
        raise KernelError(errno.EFBIG, f"overlay is {len(data)} bytes; at most {MAX_DT_WRITE_BYTES}")
    blob = check_header(data, exact_size=False)
    model = ctx.model
    model.next_tx += 1  # pre-incremented from 1: the first transaction is tx_2
    tx = OverlayTx(id=model.next_tx, status="pending", instance=UNKNOWN, resources=UNKNOWN, dtbo=bytes(data))
    try:
        root = open_dtb(blob)
        tx.resources = read_string(node_properties(root), "mk,resources") or UNKNOWN
        fragments = _fragments(root)
        tx.instance = read_string(node_properties(fragments[0]), "target-path") or UNKNOWN
        for fragment in fragments:
            _apply_fragment(ctx, tx, fragment)
    except KernelError as exc:
        # the apply loop stops at the first error; applied ops are kept (no rollback)
        log.warning("multikernel: overlay tx_%d failed: %s %s", tx.id, exc.errno, exc.detail)
        tx.status, tx.error = "failed", f"{exc.errno}: {exc.detail}"
    else:
        tx.status = "applied"
    # spec 8.1.3: tx_<N> appears only once the apply has finished, so `pending` is never read
    model.overlays[tx.id] = tx
    return tx


def _fragments(root: DtNode) -> list[DtNode]:
    """`fragment@<hex>` children in ascending unit address; none, or a bad address, is EINVAL."""
    found: list[tuple[int, DtNode]] = []
    for child in root.children():
        if child.unit_name != "fragment":
            continue
        unit = child.unit_address
        if unit is None or not _HEX.fullmatch(unit):
            raise einval(f"{child.path}: bad fragment unit address")
        found.append((int(unit, 16), child))
    if not found:
        raise einval("the overlay has no fragment@<N> nodes")
    return [node for _, node in sorted(found, key=lambda pair: pair[0])]


def _apply_fragment(ctx: OpContext, tx: OverlayTx, fragment: DtNode) -> None:
    target_path = read_string(node_properties(fragment), "target-path")
    if target_path is None:
        raise einval(f"{fragment.path}: no target-path")
    overlay = fragment.child("__overlay__")
    if overlay is None:
        raise einval(f"{fragment.path}: no __overlay__ node")
    target = resolve_target(ctx, target_path)
    ops = {node.name: node for node in overlay.children()}
    for kind in RESOURCES_OP_ORDER if target.path == RESOURCES else INSTANCE_OP_ORDER:
        node = ops.get(kind)
        if node is not None:
            apply_op(ctx, target, kind, node, tx.applied)


def resolve_target(ctx: OpContext, path: str) -> Target:
    """spec 5.4 "Targets"."""
    if path == RESOURCES:
        if not baseline_applied(ctx.model):  # vector 42
            raise KernelError(errno.EPERM, "no multikernel pool: write a baseline first")
        return Target(path)
    if path == "/instances":
        return Target(path)
    if path.startswith("/instances/"):
        name = path.removeprefix("/instances/")
        if not name or "/" in name:
            raise einval(f"bad instance target-path {path!r}")
        if ctx.model.by_name(name) is None:
            raise KernelError(errno.ENOENT, f"no instance named {name}")
        return Target(path, instance=name)
    raise einval(f"target-path {path!r} is not /resources, /instances or /instances/<name>")  # vector 47


def rollback(ctx: OpContext, tx: OverlayTx) -> None:
    """rmdir overlays/tx_<N>: undo the applied ops newest first; a failure keeps the tx, `failed`."""
    if tx.status == "removed":
        raise KernelError(errno.ENOENT, f"tx_{tx.id} is already removed")
    while tx.applied:
        try:
            undo_op(ctx, tx.applied[-1])
        except KernelError as exc:
            tx.status, tx.error = "failed", f"rollback: {exc.errno}: {exc.detail}"
            raise
        tx.applied.pop()
    tx.status, tx.error = "removed", None
    tx.dtbo = b""  # the directory is gone; only the id and status stay on record


def tx_files(tx: OverlayTx) -> dict[str, bytes]:
    """The files of overlays/tx_<N> (spec 5.4), all 0444."""
    return {
        "id": f"{tx.id}\n".encode(),
        "status": f"{tx.status}\n".encode(),
        "instance": f"{tx.instance}\n".encode(),
        "resources": f"{tx.resources}\n".encode(),
        "dtbo": tx.dtbo,
    }

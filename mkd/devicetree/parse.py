"""Device-tree input → InstanceRequest (DESIGN "Input in both profiles").

Two forms are accepted, as DTS text or DTB:
- a v2 tree (spec 5.2): `/instances/<name> { id; resources { cpus <u32...>; memory-bytes <u32>; } }`;
  a root `/resources` node (the baseline the daemon records in its v2 root tree) is ignored here,
  as the v2 kernel ignores it — parse_pool_tree reads it;
- a tree overlay (spec 5.3/5.4): `fragment@N { target-path = "/instances"; __overlay__ {
  instance-create { instance-name; id; resources { cpus /bits/ 64; memory-bytes /bits/ 64; } } } }`.
  Fragments are taken in ascending unit address, the order the kernel applies them (spec 5.4) —
  the document order of any overlay whose fragments are numbered in sequence. Several instances
  in one fragment are written `instance-create@1`, `instance-create@2`, ... (node names must differ).

A missing `id` means "lowest free id" (JSON's meaning; the v2 kernel would skip the instance).
Checks that need the pool or other instances (duplicates, ownership) are the daemon's, later.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator

from mkd.devicetree.fdt import DtNode, invalid
from mkd.devicetree.limits import MAX_DT_BYTES, MAX_INSTANCES
from mkd.devicetree.pool import parse_pool_tree
from mkd.devicetree.props import decode_int, decode_string, decode_string_list
from mkd.devicetree.resources import (
    TREE_CELLS,
    V2_CELLS,
    CellForm,
    node_properties,
    parse_resources,
    refuse_property,
)
from mkd.devicetree.source import load_tree
from mkd.domain.names import name_problem
from mkd.domain.requests import InstanceRequest, ResourceRequest
from mkd.errors import KernelError
from mkd.kernel_types import MAX_INSTANCE_ID, MIN_INSTANCE_ID

__all__ = ["MAX_DT_BYTES", "parse_instance_plan", "parse_pool_tree"]

_ROOT_STRING_PROPS = ("compatible", "model", "mk,resources")
_CELL_COUNT_PROPS = ("#address-cells", "#size-cells")
# dtc adds these to overlays compiled with -@ or with label references; they carry no plan.
_OVERLAY_METADATA = ("__symbols__", "__fixups__", "__local_fixups__")
_RESOURCE_OPS = (
    "memory-add",
    "memory-remove",
    "cpu-add",
    "cpu-remove",
    "device-add",
    "device-remove",
)


def parse_instance_plan(data: bytes, *, max_bytes: int = MAX_DT_BYTES) -> list[InstanceRequest]:
    """Parse a v2 `/instances` tree or a tree overlay of instance-create nodes (DTS or DTB)."""
    root = load_tree(data, max_bytes=max_bytes)
    _check_root_properties(root)
    child_names = set(root.child_names())
    has_instances = "instances" in child_names
    has_fragments = any(name.partition("@")[0] == "fragment" for name in child_names)
    if has_instances and has_fragments:
        raise invalid("/: mixes a v2 /instances node with overlay fragment@N nodes; send one form")
    if has_instances:
        plan = list(_v2_instances(root))
    elif has_fragments:
        plan = list(_overlay_instances(root))
    else:
        raise invalid("/: not an instance plan: expected /instances (v2 tree) or fragment@N nodes (tree overlay)")
    if not plan:
        raise invalid("/: the plan defines no instance")
    return plan


def _too_many() -> KernelError:
    return KernelError(
        errno.E2BIG,
        f"the plan defines more than {MAX_INSTANCES} instances (ids are {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID})",
        body_content=True,
    )


def _check_root_properties(root: DtNode) -> None:
    for name, value in node_properties(root).items():
        if name in _ROOT_STRING_PROPS:
            decode_string_list(root.prop_path(name), value)
        elif name in _CELL_COUNT_PROPS:
            decode_int(root.prop_path(name), value, 4)
        else:
            raise refuse_property(root, name)


# --- v2 tree (spec 5.2) ------------------------------------------------------------------------


def _v2_instances(root: DtNode) -> Iterator[InstanceRequest]:
    for node in root.children():
        if node.name not in ("instances", "resources"):
            raise invalid(f"{node.path}: unknown node in a v2 tree")
    instances = root.child("instances")
    assert instances is not None  # the caller saw it
    for name, value in node_properties(instances).items():
        if name not in _CELL_COUNT_PROPS:
            raise refuse_property(instances, name)
        decode_int(instances.prop_path(name), value, 4)
    # Count by name before building anything, so 10,000 nodes cost a walk, not 10,000 objects.
    if sum(1 for _ in itertools.islice(instances.child_names(), MAX_INSTANCES + 1)) > MAX_INSTANCES:
        raise _too_many()
    for node in instances.children():
        yield _v2_instance(node)


def _v2_instance(node: DtNode) -> InstanceRequest:
    problem = name_problem(node.name)
    if problem is not None:
        raise invalid(f"{node.path}: the node name is the instance name, and {problem}")
    instance_id: int | None = None
    for name, value in node_properties(node).items():
        if name == "id":
            instance_id = _instance_id(node, value)
        elif name == "compatible":
            decode_string_list(node.prop_path(name), value)
        else:
            raise refuse_property(node, name)
    resources = _resources_child(node, V2_CELLS)
    return InstanceRequest(name=node.name, id=instance_id, resources=resources, origin=node.path)


def _instance_id(node: DtNode, value: bytes) -> int:
    where = node.prop_path("id")
    instance_id = decode_int(where, value, 4)
    # DESIGN "Ids and refs": ids are 1..2047; v2 would accept 0 but kexec can never load it.
    if not MIN_INSTANCE_ID <= instance_id <= MAX_INSTANCE_ID:
        raise invalid(f"{where}: {instance_id} is outside {MIN_INSTANCE_ID}..{MAX_INSTANCE_ID}")
    return instance_id


def _resources_child(node: DtNode, form: CellForm) -> ResourceRequest:
    resources: ResourceRequest | None = None
    for child in node.children():
        if child.name == "resources":
            resources = parse_resources(child, form)
        elif child.name == "chosen" and form is TREE_CELLS:
            raise invalid(f"{child.path}: boot handoff nodes are not supported; pass a cmdline at load")
        else:
            raise invalid(f"{child.path}: unknown node")
    if resources is None:
        raise KernelError(form.missing_resources, f"{node.path}: has no resources node", body_content=True)
    return resources


# --- tree overlay (spec 5.3, 5.4) --------------------------------------------------------------


def _overlay_instances(root: DtNode) -> Iterator[InstanceRequest]:
    if sum(1 for _ in itertools.islice(root.child_names(), MAX_INSTANCES + len(_OVERLAY_METADATA) + 1)) > (
        MAX_INSTANCES + len(_OVERLAY_METADATA)
    ):
        # Every fragment of a plan creates at least one instance.
        raise _too_many()
    fragments: list[tuple[int, DtNode]] = []
    for node in root.children():
        if node.name in _OVERLAY_METADATA:
            continue
        if node.unit_name != "fragment":
            raise invalid(f"{node.path}: unknown node in an overlay (expected fragment@N)")
        fragments.append((_fragment_unit(node), node))
    fragments.sort(key=lambda pair: pair[0])
    count = 0
    for _, fragment in fragments:
        for create in _instance_creates(fragment):
            count += 1
            if count > MAX_INSTANCES:
                raise _too_many()
            yield _instance_create(create)


def _fragment_unit(node: DtNode) -> int:
    # Spec 5.4: fragments are ordered by their unit address; a bad one is EINVAL.
    unit = node.unit_address
    try:
        return int(unit or "", 16)
    except ValueError:
        shown = repr(unit) if unit is not None else "missing"
        raise invalid(f"{node.path}: bad unit address {shown} (expected fragment@<hex>)") from None


def _instance_creates(fragment: DtNode) -> list[DtNode]:
    target: str | None = None
    for name, value in node_properties(fragment).items():
        if name == "target-path":
            target = decode_string(fragment.prop_path(name), value)
        elif name == "target":
            raise invalid(f"{fragment.prop_path(name)}: phandle targets are not supported; use target-path")
        else:
            raise refuse_property(fragment, name)
    # Spec 5.4: each fragment needs target-path and __overlay__ (EINVAL).
    if target is None:
        raise invalid(f"{fragment.path}: has no target-path")
    overlay: DtNode | None = None
    for child in fragment.children():
        if child.name != "__overlay__":
            raise invalid(f"{child.path}: unknown node in a fragment (expected __overlay__)")
        overlay = child
    if overlay is None:
        raise invalid(f"{fragment.path}: has no __overlay__ node")
    if target != "/instances":
        raise invalid(f'{fragment.prop_path("target-path")}: {target!r}: an instance plan targets "/instances" only')
    for name in node_properties(overlay):
        raise refuse_property(overlay, name)
    creates = []
    for op in overlay.children():
        if op.unit_name == "instance-create":
            creates.append(op)
        elif op.unit_name == "instance-remove":
            raise invalid(f"{op.path}: an instance plan only creates; delete instances through the API")
        elif op.unit_name in _RESOURCE_OPS:
            # Spec 5.4: resource operations under /instances are EINVAL.
            raise invalid(f"{op.path}: resource operations cannot target /instances")
        else:
            raise invalid(f"{op.path}: unknown overlay operation")
        if len(creates) > MAX_INSTANCES:
            raise _too_many()
    if not creates:
        raise invalid(f"{overlay.path}: has no instance-create node")
    return creates


def _instance_create(node: DtNode) -> InstanceRequest:
    name: str | None = None
    instance_id: int | None = None
    for prop, value in node_properties(node).items():
        if prop == "instance-name":
            name = decode_string(node.prop_path(prop), value)
        elif prop == "id":
            instance_id = _instance_id(node, value)
        else:
            raise refuse_property(node, prop)
    # Spec 5.3: instance-name is required, non-empty, no '/'; DESIGN narrows it to a DT node name.
    if name is None:
        raise invalid(f"{node.path}: has no instance-name")
    problem = name_problem(name)
    if problem is not None:
        raise invalid(f"{node.prop_path('instance-name')}: {problem}")
    resources = _resources_child(node, TREE_CELLS)
    return InstanceRequest(name=name, id=instance_id, resources=resources, origin=node.path)

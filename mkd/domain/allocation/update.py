"""Validate a resource update (PATCH) of one instance and say what the kernel must change."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from mkd.domain.allocation.draft import Draft
from mkd.domain.allocation.ledger import Holding, Ledger
from mkd.domain.allocation.resolve import resolve_resources
from mkd.domain.requests import ResourceRequest
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec


@dataclass(frozen=True)
class ResourceDiff:
    """Changes in the kernel's order: memory removed, memory added, CPUs removed, CPUs added,
    devices removed, devices added (spec §5.4 per-fragment op order)."""

    memory_remove_bytes: int
    memory_add_bytes: int
    cpu_remove: tuple[int, ...]
    cpu_add: tuple[int, ...]
    device_remove: tuple[str, ...]
    device_add: tuple[str, ...]
    llc_way_mask: int | None  # the new mask when it changes (0: the instance gives up its ways)

    def is_empty(self) -> bool:
        return not (
            self.memory_remove_bytes
            or self.memory_add_bytes
            or self.cpu_remove
            or self.cpu_add
            or self.device_remove
            or self.device_add
            or self.llc_way_mask is not None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "memory_remove_bytes": self.memory_remove_bytes,
            "memory_add_bytes": self.memory_add_bytes,
            "cpu_remove": list(self.cpu_remove),
            "cpu_add": list(self.cpu_add),
            "device_remove": list(self.device_remove),
            "device_add": list(self.device_add),
            "llc_way_mask": self.llc_way_mask,
        }


@dataclass(frozen=True)
class PlannedUpdate:
    spec: InstanceSpec
    diff: ResourceDiff
    holding: Holding  # what the ledger records once the kernel applied the diff


def merge_patch(current: Holding, changes: Mapping[str, object]) -> ResourceRequest:
    """The complete resource request a JSON merge patch (RFC 7396) of `current` asks for.

    Fields absent keep their values; a list given replaces the list; null removes the field
    (it takes the value it has when a create leaves it out). A count replaces the explicit set
    it counts (cpu_count the cpus, llc_ways the llc_way_mask) unless the patch gives both.
    """
    kept = ResourceRequest(
        cpus=current.cpus, memory_bytes=current.memory_bytes, llc_way_mask=current.llc_way_mask,
        devices=current.devices,
    )
    defaults = {f.name: f.default for f in fields(ResourceRequest) if f.default is not MISSING}
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in defaults:
            raise KernelError(errno.EINVAL, f"resources has no field {name!r}")
        if value is None:
            values[name] = defaults[name]
        else:
            values[name] = tuple(value) if isinstance(value, list | tuple) else value
    if changes.get("cpu_count") is not None and "cpus" not in changes:
        values["cpus"] = None
    if changes.get("llc_ways") is not None and "llc_way_mask" not in changes:
        values["llc_way_mask"] = None
    return replace(kept, **values)


def plan_patch(
    ledger: Ledger, instance_id: int, changes: Mapping[str, object]
) -> tuple[InstanceSpec, ResourceDiff]:
    """plan_update for a merge patch of the instance's current resources."""
    current = ledger.holding(instance_id)
    if current is None:
        raise KernelError(errno.ENOENT, f"instance {instance_id} does not exist")
    return plan_update(ledger, instance_id, merge_patch(current, changes))


def plan_update(
    ledger: Ledger, instance_id: int, request: ResourceRequest
) -> tuple[InstanceSpec, ResourceDiff]:
    """The instance's new spec and the diff to apply, checked against everything but itself."""
    planned = plan_update_holding(ledger, instance_id, request)
    return planned.spec, planned.diff


def plan_update_holding(ledger: Ledger, instance_id: int, request: ResourceRequest) -> PlannedUpdate:
    """Like plan_update, with the new holding (its per-node memory included) for the ledger.

    `request` is the complete new resource set (plan_patch merges a PATCH into it first).
    Updates exist only on the tree kernel (rfc-v2 refuses PATCH with EOPNOTSUPP), so memory is
    u64 and raw-kernel notes are the tree's.
    """
    current = ledger.holding(instance_id)
    if current is None:
        raise KernelError(errno.ENOENT, f"instance {instance_id} does not exist")
    draft = Draft(ledger, released=current)
    resources = resolve_resources(draft, request, u32_memory=False, profile="tree", current=current)
    spec = InstanceSpec(
        id=current.id,
        name=current.name,
        cpus=resources.cpus,
        memory_bytes=resources.memory_bytes,
        llc_way_mask=resources.llc_way_mask,
        devices=resources.devices,
        numa_node=resources.numa_node,
    )
    new_cpus, old_cpus = set(spec.cpus), set(current.cpus)
    new_devices, old_devices = set(spec.devices), set(current.devices)
    memory_change = spec.memory_bytes - current.memory_bytes
    llc_change: int | None = None
    if spec.llc_way_mask != current.llc_way_mask:
        llc_change = spec.llc_way_mask or 0
    diff = ResourceDiff(
        memory_remove_bytes=max(-memory_change, 0),
        memory_add_bytes=max(memory_change, 0),
        cpu_remove=tuple(cpu for cpu in current.cpus if cpu not in new_cpus),
        cpu_add=tuple(cpu for cpu in spec.cpus if cpu not in old_cpus),
        device_remove=tuple(device for device in current.devices if device not in new_devices),
        device_add=tuple(device for device in spec.devices if device not in old_devices),
        llc_way_mask=llc_change,
    )
    return PlannedUpdate(spec=spec, diff=diff, holding=Holding.from_spec(spec, resources.numa_memory))

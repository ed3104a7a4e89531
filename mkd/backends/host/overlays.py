"""Tree-profile changes as overlay transactions (spec 5.4), with a kernel errno for each failure.

An overlay write succeeds even when the transaction fails; the kernel logs why and reports only
`status = failed`, no errno. Where the kernel shows its log (the simulator, kernel_log.py) the
logged errno is raised; otherwise it is inferred from the state read before the write, the way
the kernel's own checks would have answered (spec 5.3, 5.4):
- instance-create: memory beyond what the pool has free → ENOMEM, otherwise EINVAL (names and
  ids in use were refused with EEXIST before writing);
- instance-remove: an instance that is LOADED or ACTIVE → EBUSY, otherwise EINVAL;
- instance update: growth beyond free memory → ENOMEM; an instance holding a kimage → EBUSY
  (segments or a running kernel hold the resources); otherwise EINVAL;
- /resources changes: EBUSY (a resource not free in the pool, a chunk in use, stranded CPUs).
The `detail` always names the transaction and its status, and says whether the errno was logged
or inferred.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Sequence
from typing import Any

from mkd.backends.host.kernel_log import logged_tx_error
from mkd.backends.host.sysfs import MultikernelFs, Transaction
from mkd.devicetree.overlay import (
    build_instance_create_overlay,
    build_instance_remove_overlay,
    build_instance_update_overlay,
    build_resources_overlay,
)
from mkd.errors import KernelError
from mkd.kernel_types import InstanceSpec, KernelInstance, MemChunk

HOLDS_KIMAGE = frozenset({"loaded", "active"})
# spec 8.7: every hot-plug op into an ACTIVE instance waits this long for the spawn's ACK.
RESOURCE_ACK_TIMEOUT_S = 10.0
# spec 8.7.3: the x86 default memory block (the spawn's memory_block_size_bytes(), inferred).
MEMORY_BLOCK_BYTES = 128 << 20


class OverlayApplier:
    def __init__(self, fs: MultikernelFs) -> None:
        self.fs = fs

    def apply(
        self, dtbo: bytes, *, what: str, failure_errno: Callable[[], int], instance_id: int | None = None
    ) -> Transaction:
        """Write one overlay; unless its transaction applied, raise KernelError with the errno the
        kernel logged, else `failure_errno()` (asked only then: it may read the whole kernel)."""
        tx = self.fs.write_overlay(dtbo)
        if tx.status != "applied":
            logged = logged_tx_error(self.fs.io, tx.id)
            if logged is not None:
                raise KernelError(
                    logged.errno_code,
                    f"{what}: overlays/{tx.name} is {tx.status!r} (target {tx.instance}); the kernel logged: "
                    f"{logged.reason}; operations before the failing one stay applied (spec 5.4)",
                    instance_id=instance_id,
                )
            raise KernelError(
                failure_errno(),
                f"{what}: overlays/{tx.name} is {tx.status!r} (target {tx.instance}); the kernel gives "
                "no errno for a failed transaction, this one is inferred (the kernel log has the cause); "
                "operations before the failing one stay applied (spec 5.4)",
                instance_id=instance_id,
            )
        return tx

    def create_instance(self, spec: InstanceSpec, *, free_memory: Callable[[], int]) -> Transaction:
        """`free_memory()`: the pool's free bytes before this write, asked only to infer an errno."""
        return self.apply(
            build_instance_create_overlay(spec),
            what=f"instance-create {spec.name!r}",
            failure_errno=lambda: errno.ENOMEM if spec.memory_bytes > free_memory() else errno.EINVAL,
            instance_id=spec.id,
        )

    def remove_instance(self, instance: KernelInstance) -> Transaction:
        code = errno.EBUSY if instance.kernel_state in HOLDS_KIMAGE else errno.EINVAL
        return self.apply(
            build_instance_remove_overlay(instance.name),
            what=f"instance-remove {instance.name!r}",
            failure_errno=lambda: code,
            instance_id=instance.id,
        )

    def update_instance(
        self, current: KernelInstance, spec: InstanceSpec, *, free_memory: Callable[[], int]
    ) -> Transaction | None:
        """The difference between `current` and `spec` as one instance overlay; None if no change."""
        memory_remove, memory_add = _memory_change(current, spec)
        cpu_remove = [cpu for cpu in current.cpus if cpu not in spec.cpus]
        cpu_add = [cpu for cpu in spec.cpus if cpu not in current.cpus]
        device_remove = [device for device in current.devices if device not in spec.devices]
        device_add = [device for device in spec.devices if device not in current.devices]
        if not (memory_remove or memory_add or cpu_remove or cpu_add or device_remove or device_add):
            return None

        def inferred() -> int:
            if memory_add > free_memory():
                return errno.ENOMEM
            if current.kernel_state in HOLDS_KIMAGE or current.kernel_state == "failed":
                return errno.EBUSY
            return errno.EINVAL

        return self.apply(
            build_instance_update_overlay(
                current.name,
                memory_remove=memory_remove,
                memory_add=memory_add,
                cpu_remove=cpu_remove,
                cpu_add=cpu_add,
                device_remove=device_remove,
                device_add=device_add,
            ),
            what=f"update of {current.name!r}",
            failure_errno=inferred,
            instance_id=current.id,
        )

    def update_active_instance(self, current: KernelInstance, spec: InstanceSpec, *, free_cpus: set[int]) -> None:
        """Hot-plug into an ACTIVE instance through the spawn's ACK, one operation per overlay
        transaction (spec 8.7): the kernel stops at the first error and does not undo what
        applied, so one op per transaction tells exactly which took effect. A failure raises
        KernelError whose `extra` holds `applied`: the operations before it."""
        memory_remove, memory_add = _memory_change(current, spec)
        # spec 5.4 instance order: memory, cpus, devices; removals first.
        ops: list[dict[str, Any]] = [
            *({"op": "memory-remove", "base": chunk.base, "bytes": chunk.bytes} for chunk in memory_remove),
            *([{"op": "memory-add", "bytes": memory_add}] if memory_add else []),
            *({"op": "cpu-remove", "cpu": cpu} for cpu in current.cpus if cpu not in spec.cpus),
            *({"op": "cpu-add", "cpu": cpu} for cpu in spec.cpus if cpu not in current.cpus),
            *({"op": "device-remove", "device": d} for d in current.devices if d not in spec.devices),
            *({"op": "device-add", "device": d} for d in spec.devices if d not in current.devices),
        ]
        applied: list[dict[str, Any]] = []
        for op in ops:
            began = time.monotonic()
            tx = self.fs.write_overlay(_single_op_overlay(current.name, op))
            if tx.status == "applied":
                applied.append(op)
                continue
            stays = f"{len(applied)} of {len(ops)} operations applied and stay (spec 8.7: no undo)"
            logged = logged_tx_error(self.fs.io, tx.id)
            if logged is not None:  # where the kernel shows its log (the simulator), its errno
                raise KernelError(
                    logged.errno_code,
                    f"{_op_text(op)} on ACTIVE {current.name!r}: overlays/{tx.name} is {tx.status!r}; the kernel "
                    f"logged: {logged.reason}. {stays}",
                    instance_id=current.id, extra={"applied": applied},
                )
            code, why = _active_op_errno(current, op, free_cpus, waited_s=time.monotonic() - began)
            raise KernelError(
                code,
                f"{_op_text(op)} on ACTIVE {current.name!r}: overlays/{tx.name} is {tx.status!r}; {why} "
                f"(errno inferred: the kernel gives none for a failed transaction, its log has the cause). {stays}",
                instance_id=current.id,
                extra={"applied": applied},
            )

    def change_resources(
        self,
        *,
        cpu_remove: Sequence[int] = (),
        cpu_add: Sequence[int] = (),
        memory_remove: Sequence[MemChunk] = (),
        memory_add: Sequence[MemChunk] = (),
        device_remove: Sequence[str] = (),
        device_add: Sequence[str] = (),
    ) -> Transaction:
        return self.apply(
            build_resources_overlay(
                cpu_remove=cpu_remove,
                cpu_add=cpu_add,
                memory_remove=memory_remove,
                memory_add=memory_add,
                device_remove=device_remove,
                device_add=device_add,
            ),
            what="pool change",
            failure_errno=lambda: errno.EBUSY,
        )


def ranges_to_release(instance: KernelInstance, size: int) -> list[MemChunk]:
    """Whole instance regions adding up to `size`, newest (highest) first.

    The kernel removes instance memory only by naming a region exactly (spec 8.6.2: anything
    else is ENOENT), so a shrink that is not a sum of whole regions cannot be asked for; it is
    refused here, before any write, naming the regions there are.
    """
    if not instance.memory:
        raise KernelError(
            errno.EIO,
            f"cannot shrink {instance.name!r}: its memory chunks are not visible in /proc/iomem "
            "(reading addresses needs CAP_SYS_ADMIN)",
            instance_id=instance.id,
        )
    newest_first = sorted(instance.memory, key=lambda chunk: chunk.base, reverse=True)
    exact = next((chunk for chunk in newest_first if chunk.bytes == size), None)
    if exact is not None:
        return [exact]
    released, remaining = [], size
    for chunk in newest_first:
        if chunk.bytes <= remaining:
            released.append(chunk)
            remaining -= chunk.bytes
    if remaining:
        listing = ", ".join(f"{chunk.base:#x}+{chunk.bytes:#x}" for chunk in instance.memory)
        raise KernelError(
            errno.EINVAL,
            f"cannot shrink {instance.name!r} by {size:#x} bytes: the kernel removes whole regions only "
            f"(spec 8.6.2) and its regions are {listing}",
            instance_id=instance.id,
        )
    return released


def _single_op_overlay(name: str, op: dict[str, Any]) -> bytes:
    kind = op["op"]
    if kind == "memory-remove":
        return build_instance_update_overlay(name, memory_remove=[MemChunk(op["base"], op["bytes"])])
    if kind == "memory-add":
        return build_instance_update_overlay(name, memory_add=op["bytes"])
    if kind == "cpu-remove":
        return build_instance_update_overlay(name, cpu_remove=[op["cpu"]])
    if kind == "cpu-add":
        return build_instance_update_overlay(name, cpu_add=[op["cpu"]])
    if kind == "device-remove":
        return build_instance_update_overlay(name, device_remove=[op["device"]])
    return build_instance_update_overlay(name, device_add=[op["device"]])


def _op_text(op: dict[str, Any]) -> str:
    return " ".join([op["op"], *(str(value) for key, value in op.items() if key != "op")])


def _active_op_errno(
    current: KernelInstance, op: dict[str, Any], free_cpus: set[int], *, waited_s: float
) -> tuple[int, str]:
    """The errno the kernel's steps give for a failed op into an ACTIVE instance (spec 8.7)."""
    if waited_s >= RESOURCE_ACK_TIMEOUT_S:
        return errno.ETIMEDOUT, f"no ACK from the spawn within {RESOURCE_ACK_TIMEOUT_S:g} s"
    kind = op["op"]
    if kind == "cpu-add":
        if op["cpu"] not in free_cpus:
            return errno.EBUSY, f"CPU {op['cpu']} is not free in the pool (8.7.1 step 1)"
        return errno.ENODEV, (f"the spawn did not enumerate CPU {op['cpu']} at boot: it was not in the boot "
                              "tree's pool-cpus (8.7.1 step 4); it stays free in the pool")
    if kind == "cpu-remove":
        if current.cpus and op["cpu"] == current.cpus[0]:
            return errno.EINVAL, f"CPU {op['cpu']} is the instance's boot CPU (8.7.2)"
        return errno.ENODEV, f"the spawn does not have CPU {op['cpu']} (8.7.2)"
    if kind in ("memory-add", "memory-remove"):
        if op["bytes"] % MEMORY_BLOCK_BYTES or op.get("base", 0) % MEMORY_BLOCK_BYTES:
            return errno.EINVAL, f"not aligned to the spawn's {MEMORY_BLOCK_BYTES >> 20} MiB memory block (8.7.3)"
        if kind == "memory-add":
            return errno.ENOMEM, "the pool has no room for it (8.7.3 step 3)"
        return errno.EBUSY, "the spawn could not offline the range (8.7.4)"
    return errno.ENODEV, f"the spawn has not enumerated device {op['device']} (8.7.6, 8.7.7)"


def _memory_change(current: KernelInstance, spec: InstanceSpec) -> tuple[list[MemChunk], int]:
    """The regions a shrink releases (whole regions, spec 8.6.2) and the bytes a growth adds."""
    if spec.memory_bytes > current.memory_bytes:
        return [], spec.memory_bytes - current.memory_bytes
    if spec.memory_bytes < current.memory_bytes:
        return ranges_to_release(current, current.memory_bytes - spec.memory_bytes), 0
    return [], 0

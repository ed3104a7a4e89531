"""Where an instance goes (DESIGN "Fleet", Scheduling): a pure function of the nodes, what is
already booked on them and the instance's demand, so the same inputs give the same answer.

A node's `capacity` counts what the fleet's own instances hold as free (the node agent reports
it so), and `allocations/<node>` books them: room = capacity − bookings, never both subtracted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["most-allocated", "spread"]


@dataclass(frozen=True)
class Demand:
    cpus: int
    memory_bytes: int
    numa_nodes: tuple[int, ...] | None = None  # where its memory may come from; None: any
    node: str | None = None  # spec.node
    selector: Mapping[str, str] = field(default_factory=dict)  # spec.nodeSelector
    needs_halt: bool = False  # spec.reschedule OnNodeLoss: only kernels that can halt

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Demand:
        """The demand of an Instance document's spec (resources as the create body has them)."""
        resources = spec.get("resources") or {}
        cpus = resources.get("cpus")
        count = len(cpus) if cpus else int(resources.get("cpu_count") or 1)
        numa = resources.get("numa_nodes")
        return cls(cpus=count, memory_bytes=int(resources.get("memory_bytes") or 0),
                   numa_nodes=tuple(sorted(int(n) for n in numa)) if numa else None,
                   node=spec.get("node"), selector=dict(spec.get("nodeSelector") or {}),
                   needs_halt=spec.get("reschedule") == "OnNodeLoss")


@dataclass(frozen=True)
class Booking:
    """What one placed instance takes on its node."""

    cpus: int
    numa: int
    memory_bytes: int

    def json(self) -> dict[str, int]:
        return {"cpus": self.cpus, "numa": self.numa, "memory_bytes": self.memory_bytes}

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Booking:
        return cls(int(raw["cpus"]), int(raw["numa"]), int(raw["memory_bytes"]))


@dataclass(frozen=True)
class NodeView:
    name: str
    cpus: int  # capacity.cpus_free
    memory: Mapping[int, int]  # capacity.memory_free by NUMA node
    labels: Mapping[str, str] = field(default_factory=dict)
    capabilities: Mapping[str, bool] = field(default_factory=dict)
    cordoned: bool = False

    @classmethod
    def of(cls, record: Mapping[str, Any], *, cordoned: bool = False) -> NodeView:
        capacity = record.get("capacity") or {}
        return cls(name=str(record["name"]), cpus=int(capacity.get("cpus_free", 0)),
                   memory={int(k): int(v) for k, v in (capacity.get("memory_free") or {}).items()},
                   labels=dict(record.get("labels") or {}), capabilities=dict(record.get("capabilities") or {}),
                   cordoned=cordoned or bool(record.get("cordoned")))


@dataclass(frozen=True)
class Choice:
    node: str
    booking: Booking


@dataclass(frozen=True)
class NoFit:
    reason: str


def booked(bookings: Mapping[str, Booking]) -> tuple[int, dict[int, int]]:
    """CPUs and memory by NUMA node that `bookings` take."""
    cpus = 0
    memory: dict[int, int] = {}
    for booking in bookings.values():
        cpus += booking.cpus
        memory[booking.numa] = memory.get(booking.numa, 0) + booking.memory_bytes
    return cpus, memory


def _matches(node: NodeView, demand: Demand) -> str | None:
    """Why `node` may not take the instance at all, or None."""
    if demand.node is not None and node.name != demand.node:
        return "not spec.node"
    for key, value in sorted(demand.selector.items()):
        if node.labels.get(key) != value:
            return f"label {key}={value} missing"
    if node.cordoned:
        return "cordoned"
    if demand.needs_halt and not node.capabilities.get("halt", False):
        return "kernel cannot halt (reschedule: OnNodeLoss)"
    return None


def _room(node: NodeView, taken: Mapping[str, Booking], demand: Demand,
          strategy: Strategy) -> tuple[Booking, float] | str:
    """The booking on `node` and its score (higher wins), or why it does not fit."""
    used_cpus, used_memory = booked(taken)
    free_cpus = node.cpus - used_cpus
    if free_cpus < demand.cpus:
        return f"{free_cpus} CPUs free, {demand.cpus} needed"
    allowed = demand.numa_nodes if demand.numa_nodes is not None else tuple(sorted(node.memory))
    free = {numa: node.memory.get(numa, 0) - used_memory.get(numa, 0) for numa in allowed}
    fitting = [numa for numa in sorted(free) if free[numa] >= demand.memory_bytes]
    if not fitting:
        most = max(free.values(), default=0)
        return f"at most {most} bytes free on one NUMA node, {demand.memory_bytes} needed"
    # most-allocated fills the fullest NUMA node that fits; spread the emptiest (ties: lowest id).
    if strategy == "most-allocated":
        numa = min(fitting, key=lambda n: (free[n], n))
    else:
        numa = min(fitting, key=lambda n: (-free[n], n))
    total_memory = sum(node.memory.values()) or 1
    cpu_share = (used_cpus + demand.cpus) / max(node.cpus, 1)
    memory_share = (sum(used_memory.values()) + demand.memory_bytes) / total_memory
    share = (cpu_share + memory_share) / 2
    return Booking(demand.cpus, numa, demand.memory_bytes), share if strategy == "most-allocated" else -share


def place(demand: Demand, nodes: Sequence[NodeView], bookings: Mapping[str, Mapping[str, Booking]],
          strategy: Strategy) -> Choice | NoFit:
    """The node for `demand` among `nodes` (live ones), given what each already has booked."""
    best: tuple[float, str, Booking] | None = None
    refusals: list[str] = []
    for node in sorted(nodes, key=lambda n: n.name):
        why = _matches(node, demand)
        if why is not None:
            refusals.append(f"{node.name}: {why}")
            continue
        room = _room(node, bookings.get(node.name, {}), demand, strategy)
        if isinstance(room, str):
            refusals.append(f"{node.name}: {room}")
            continue
        booking, score = room
        # Highest score wins; names break ties, so the answer never depends on input order.
        if best is None or score > best[0]:
            best = (score, node.name, booking)
    if best is not None:
        return Choice(best[1], best[2])
    if not nodes:
        return NoFit("no live node")
    if demand.node is not None and all(n.name != demand.node for n in nodes):
        return NoFit(f"spec.node {demand.node!r} is not a live node")
    return NoFit("no node fits: " + "; ".join(refusals[:8]) + (" ..." if len(refusals) > 8 else ""))

"""An instance's fleet status (DESIGN "Fleet": `status` adds `node` and `phase`), composed from
its placement, the owning node's `status/<name>` and whether that node is alive."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Literal

Phase = Literal["Pending", "Placed", "Running", "NodeLost", "Failed"]


def status_of(placement: Mapping[str, Any] | None, status: Mapping[str, Any] | None,
              live_nodes: Collection[str]) -> dict[str, Any]:
    """`status` of an instance document: the scheduler's Pending reason, or the owner's report."""
    if placement is None:
        out: dict[str, Any] = {"node": None, "phase": "Pending"}
        if status is not None and status.get("phase") == "Pending":
            out["reason"] = status.get("reason")
        return out
    node = str(placement["node"])
    if node not in live_nodes:
        return {"node": node, "phase": "NodeLost", "reason": f"node {node} holds no lease"}
    if status is None or status.get("node") != node or status.get("phase") == "Pending":
        return {"node": node, "phase": "Placed"}
    return {**dict(status), "node": node}

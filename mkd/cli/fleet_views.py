"""How `mkd fleet` prints the fleet's nodes and instances as tables (-o json|yaml print the bodies)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich import box
from rich.console import RenderableType
from rich.table import Table

from mkd.cli.quantities import format_size


def _rows(*headers: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def _labels(labels: dict[str, Any] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items())) or "-"


def _memory_free(capacity: dict[str, Any]) -> str:
    free = capacity.get("memory_free")
    if not isinstance(free, dict) or not free:
        return "-"
    return format_size(sum(int(v) for v in free.values()))


def nodes_view(body: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    headers = ["NAME", "STATUS", "PROFILE", "CPUS FREE", "MEMORY FREE", "LABELS"]
    if wide:
        headers += ["URL", "ARCH", "VERSION"]
    table = _rows(*headers)
    for node in body["items"]:
        capacity = node.get("capacity") or {}
        status = ("Ready" if node.get("live", True) else "Lost") + (",Cordoned" if node.get("cordoned") else "")
        row = [node["name"], status, str(node.get("profile", "-")), str(capacity.get("cpus_free", "-")),
               _memory_free(capacity), _labels(node.get("labels"))]
        if wide:
            row += [str(node.get("url", "-")), str(node.get("arch", "-")), str(node.get("version", "-"))]
        table.add_row(*row)
    yield table


def _status(document: dict[str, Any]) -> dict[str, Any]:
    status = document.get("status")
    return status if isinstance(status, dict) else {}


def instances_view(body: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    headers = ["NAME", "PHASE", "NODE", "KERNEL", "REASON"]
    if wide:
        headers += ["PLACE", "RESCHEDULE", "LABELS"]
    table = _rows(*headers)
    for document in body["items"]:
        spec, status = document.get("spec") or {}, _status(document)
        row = [document["metadata"]["name"], str(status.get("phase", "-")), str(status.get("node") or "-"),
               str(spec.get("kernel", "-"))[:12], str(status.get("reason") or "")]
        if wide:
            place = spec.get("node") or (_labels(spec["nodeSelector"]) if spec.get("nodeSelector") else "any")
            row += [str(place), str(spec.get("reschedule", "Never")),
                    _labels(document["metadata"].get("labels"))]
        table.add_row(*row)
    yield table


def instance_view(document: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    spec, status = document.get("spec") or {}, _status(document)
    fields = Table(box=None, show_header=False, pad_edge=False)
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column()
    fields.add_row("name", str(document["metadata"]["name"]))
    fields.add_row("phase", str(status.get("phase", "-")) + (f" ({status['reason']})" if status.get("reason") else ""))
    fields.add_row("node", str(status.get("node") or "-"))
    fields.add_row("wants node", str(spec.get("node") or "-"))
    fields.add_row("node selector", _labels(spec.get("nodeSelector")))
    fields.add_row("reschedule", str(spec.get("reschedule", "Never")))
    fields.add_row("kernel", str(spec.get("kernel", "-")) if wide else str(spec.get("kernel", "-"))[:12])
    fields.add_row("state", f"{status.get('state', '-')} (wants {spec.get('state', 'Active')})")
    if document["metadata"].get("deletionTimestamp"):
        fields.add_row("deleting since", str(document["metadata"]["deletionTimestamp"]))
    yield fields


def node_view(node: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    yield from nodes_view({"items": [node]}, wide)

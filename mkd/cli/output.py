"""How the CLI prints what the daemon answers: a table for people, JSON or YAML for scripts.

`-o table` (default) and `-o wide` pick columns of the API's bodies; `-o json` prints the body as the
API sent it and `-o yaml` the same through PyYAML's safe dumper, so scripts see the documented shapes.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml
from rich import box
from rich.console import Console, RenderableType
from rich.table import Table

from mkd.cli.quantities import format_cpu_list, format_size


class Format(StrEnum):
    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


OutputOpt = Annotated[Format, typer.Option("--output", "-o", help="table (default), wide, json or yaml",
                                           case_sensitive=False)]

# A view turns a body into tables; its flag says whether the wide columns are wanted.
View = Callable[[Any, bool], Iterable[RenderableType]]


def print_tables(renderables: Iterable[RenderableType]) -> None:
    """On a terminal rich's own console; piped, plain text with no width limit, so a table is neither
    wrapped nor cut (rich would assume 80 columns), without rules and trailing blanks."""
    if sys.stdout.isatty():
        terminal = Console(file=sys.stdout)
        for renderable in renderables:
            terminal.print(renderable)
        return
    plain = Console(file=io.StringIO(), width=100_000, no_color=True, highlight=False)
    with plain.capture() as captured:
        for renderable in renderables:
            if isinstance(renderable, Table):
                renderable.box = None  # piped: columns only, for awk and cut
            plain.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def as_yaml(value: Any) -> str:
    """YAML through PyYAML's safe dumper (plain data only, no Python tags), keys in the API's order."""
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True)


def emit(value: Any, fmt: Format, view: View) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(value, indent=2) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(as_yaml(value))
    else:
        print_tables(view(value, fmt is Format.wide))


def _rows(*headers: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        table.add_column(header, no_wrap=True)
    return table


def _fields(title: str | None = None) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, title=title, title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    return table


def _hex(value: int | None) -> str:
    return "-" if value is None else hex(value)


def _short(sha: str | None) -> str:
    return "-" if not sha else sha[:12]


def _chunks(chunks: list[dict[str, Any]]) -> str:
    return ", ".join(f"{hex(c['base'])}+{format_size(c['bytes'])}" for c in chunks) or "-"


def instances_view(items: list[dict[str, Any]], wide: bool) -> Iterable[RenderableType]:
    headers = ["ID", "NAME", "STATE", "CPUS", "MEMORY", "KERNEL"]
    if wide:
        headers += ["KERNEL STATE", "NUMA", "CHUNKS", "INITRD", "CMDLINE", "UID"]
    table = _rows(*headers)
    for item in items:
        resources, kimage = item["resources"], item.get("kimage") or {}
        row = [str(item["id"]), item["name"], item["state"], format_cpu_list(resources["cpus"]) or "-",
               format_size(resources["memory_bytes"]), _short(kimage.get("kernel"))]
        if wide:
            numa = resources.get("numa_node")
            row += [item.get("kernel_state", "-"), "-" if numa is None else str(numa), _chunks(item["memory"]),
                    _short(kimage.get("initrd")), kimage.get("cmdline", "-") or '""', item["uid"]]
        table.add_row(*row)
    yield table


def instance_view(item: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    if "items" in item:  # a device-tree plan creates several
        yield from instances_view(item["items"], wide)
        return
    resources = item["resources"]
    fields = _fields()
    fields.add_row("id", str(item["id"]))
    fields.add_row("name", item["name"])
    fields.add_row("state", item["state"] + (f" ({item['failure']})" if item.get("failure") else ""))
    fields.add_row("cpus", format_cpu_list(resources["cpus"]) or "-")
    fields.add_row("memory", f"{format_size(resources['memory_bytes'])} in {_chunks(item['memory'])}")
    if resources.get("llc_way_mask") is not None:
        fields.add_row("llc ways", _hex(resources["llc_way_mask"]))
    if resources.get("devices"):
        fields.add_row("devices", ", ".join(resources["devices"]))
    if wide:
        fields.add_row("uid", item["uid"])
        fields.add_row("kernel state", item.get("kernel_state", "-"))
        fields.add_row("version", str(item.get("version", "-")))
        fields.add_row("updated", item.get("updated_at", "-"))
    kimage = item.get("kimage")
    if kimage is None:
        fields.add_row("kimage", "-")
        yield fields
        return
    fields.add_row("kernel", kimage["kernel"] if wide else _short(kimage["kernel"]))
    fields.add_row("initrd", (kimage["initrd"] or "-") if wide else _short(kimage["initrd"]))
    fields.add_row("cmdline", kimage["cmdline"] or '""')
    fields.add_row("loader", f"{kimage.get('loader', '-')}, entry {_hex(kimage.get('start'))}")
    yield fields
    segments = _rows("SEGMENT", "MEM", "MEMSZ", "BUFSZ", *(["IN POOL", "SHA256"] if wide else []))
    for seg in kimage["segments"]:
        row = [seg["kind"], hex(seg["mem"]), format_size(seg["memsz"]), format_size(seg["bufsz"])]
        if wide:
            row += ["yes" if seg.get("in_pool", True) else "no", seg.get("sha256", "-")]
        segments.add_row(*row)
    yield segments


def images_view(items: list[dict[str, Any]], wide: bool) -> Iterable[RenderableType]:
    table = _rows("SHA256", "FORMAT", "SIZE", *(["BYTES", "CREATED"] if wide else []))
    for item in items:
        row = [item["sha256"] if wide else _short(item["sha256"]), item["format"], format_size(item["size"])]
        if wide:
            row += [str(item["size"]), item.get("created_at") or "-"]
        table.add_row(*row)
    yield table


def document_view(document: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    """A declared instance's document as a table: its spec and status at a glance."""
    spec, status = document.get("spec") or {}, document.get("status") or {}
    fields = _fields()
    fields.add_row("name", str((document.get("metadata") or {}).get("name", "")))
    fields.add_row("state", f"{status.get('state')} (wants {spec.get('state')})")
    fields.add_row("generation", f"{status.get('observed_generation')}/{status.get('generation')}")
    fields.add_row("kernel", str(spec.get("kernel")) if wide else _short(str(spec.get("kernel"))))
    fields.add_row("restarts", str(status.get("restarts", 0)))
    for condition in status.get("conditions") or []:
        fields.add_row(condition["type"], f"{condition['status']} {condition['reason']}")
    yield fields


def pruned_view(result: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    table = _rows("REMOVED")
    for sha in result["removed"]:
        table.add_row(sha if wide else _short(sha))
    yield table


def image_view(item: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    fields = _fields()
    fields.add_row("sha256", item["sha256"])
    fields.add_row("format", item["format"])
    fields.add_row("size", f"{format_size(item['size'])} ({item['size']} bytes)")
    if wide:
        fields.add_row("created", item.get("created_at") or "-")
    yield fields


def pool_view(pool: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    if "pool" in pool and "changed" in pool:  # PUT /v1/pool's answer
        changes = _fields()
        changes.add_row("changed", "yes" if pool["changed"] else "no")
        for key, value in pool["diff"].items():
            changes.add_row(key, json.dumps(value))
        yield changes
        yield from pool_view(pool["pool"], wide)
        return
    free = pool["free"]
    fields = _fields()
    fields.add_row("cpus", format_cpu_list(pool["cpus"]) or "-")
    fields.add_row("memory", f"{format_size(pool['memory_bytes'])} at {hex(pool['memory_base'])}")
    fields.add_row("free cpus", format_cpu_list(free["cpus"]) or "-")
    fields.add_row("free memory", format_size(free["memory_bytes"]))
    fields.add_row("llc ways", f"{_hex(pool.get('llc_way_mask'))} (free {_hex(free.get('llc_way_mask'))})")
    if pool.get("devices") or wide:
        fields.add_row("devices", ", ".join(pool.get("devices", [])) or "-")
    yield fields
    if wide:
        chunks = _rows("CHUNK BASE", "SIZE", "NUMA")
        for chunk in pool.get("chunks", []):
            numa = chunk.get("numa_node")
            chunks.add_row(hex(chunk["base"]), format_size(chunk["bytes"]), "-" if numa is None else str(numa))
        yield chunks


def host_view(host: dict[str, Any], wide: bool) -> Iterable[RenderableType]:
    topology = host["topology"]
    fields = _fields()
    fields.add_row("backend", host["backend"])
    fields.add_row("kernel profile", host["kernel_profile"])
    fields.add_row("arch", host["arch"])
    fields.add_row("capabilities", ", ".join(k for k, on in host["capabilities"].items() if on) or "-")
    missing = [k for k, on in host["capabilities"].items() if not on]
    if missing:
        fields.add_row("lacks", ", ".join(missing))
    fields.add_row("memory", format_size(topology["memory_bytes"]))
    fields.add_row("pool range", f"{format_size(topology['pool_bytes'])} at {hex(topology['pool_base'])}")
    fields.add_row("llc ways", _hex(topology.get("llc_way_mask")))
    yield fields
    nodes: dict[tuple[int, int], list[int]] = {}
    for cpu in topology["cpus"]:
        nodes.setdefault((cpu["numa_node"], cpu["llc"]), []).append(cpu["id"])
    cpus = _rows("NUMA", "LLC", "CPUS")
    for (node, llc), ids in sorted(nodes.items()):
        cpus.add_row(str(node), str(llc), format_cpu_list(ids))
    yield cpus
    if wide and topology.get("devices"):
        devices = _rows("DEVICE", "TYPE")
        for device in topology["devices"]:
            devices.add_row(device["name"], device["type"])
        yield devices


def event_line(event_id: int | None, kind: str, data: Any) -> str:
    """One event as a line for people: id, kind, instance, and what happened."""
    if not isinstance(data, dict):
        return f"{event_id or '-':>6}  {kind:<10} {data}"
    who = f"{data.get('name', '-')}({data['id']})" if "id" in data else "-"
    if "to" in data:
        what = f"{data.get('from') or '-'} -> {data['to']}  ({data.get('cause', '-')})"
    elif "errno" in data:
        what = f"{data.get('operation', '-')} refused: {data['errno']}"
    else:
        what = " ".join(f"{k}={json.dumps(v)}" for k, v in data.items() if k not in ("id", "name"))
    return f"{event_id or '-':>6}  {kind:<10} {who:<20} {what}".rstrip()

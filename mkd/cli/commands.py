"""Client commands: each one HTTP call, the answer as a table (or -o json|yaml|wide), refusals as exit codes."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from mkd.cli import declarative
from mkd.cli.client import EXIT_INVALID, CliError, Target, call, follow_events
from mkd.cli.output import (
    Format,
    OutputOpt,
    as_yaml,
    document_view,
    emit,
    event_line,
    host_view,
    image_view,
    images_view,
    instance_view,
    instances_view,
    pool_view,
    pruned_view,
)
from mkd.cli.quantities import QuantityError, parse_cpu_list, parse_size
from mkd.cli.upload import upload

UrlOpt = Annotated[str, typer.Option("--url", envvar="MKD_URL", help="daemon URL")]
SocketOpt = Annotated[Path | None, typer.Option("--socket", envvar="MKD_SOCKET", help="daemon unix socket")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MKD_TOKEN", help="bearer token")]
IfMatchOpt = Annotated[str | None, typer.Option("--if-match", help="ETag the instance must still have")]
KeyOpt = Annotated[str | None, typer.Option("--idempotency-key", help="makes a retried POST safe")]
CpusOpt = Annotated[str | None, typer.Option("--cpus", help="CPU ids and ranges, e.g. 2-5,8")]
CpuCountOpt = Annotated[int | None, typer.Option("--cpu-count", help="how many CPUs the daemon picks")]
MemoryOpt = Annotated[str | None, typer.Option("--memory", "--memory-bytes",
                                               help="size: 256M, 1G, 0x10000000 or bytes (K/M/G/T = 1024^n)")]
ProgressOpt = Annotated[bool | None, typer.Option("--progress/--no-progress",
                                                  help="upload progress bar on stderr (default: when a terminal)")]

instances = typer.Typer(no_args_is_help=True, help="Instances and their lifecycle.")
images = typer.Typer(no_args_is_help=True, help="The image store.")
pool = typer.Typer(no_args_is_help=True, help="The multikernel pool (baseline).")

_state: dict[str, Target] = {}


def target() -> Target:
    return _state.get("target", Target())


def set_target(url: str, socket_path: Path | None, token: str | None) -> None:
    _state["target"] = Target(url=url, socket=socket_path, token=token)


def run(fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except CliError as exc:
        typer.echo(f"mkd: {exc.message}", err=True)
        raise typer.Exit(exc.code) from exc
    except QuantityError as exc:  # a CPU list or size that does not parse: invalid input, before any call
        typer.echo(f"mkd: {exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc
    except OSError as exc:  # a local file the command was given cannot be read
        where = f" {exc.filename}" if exc.filename else ""
        typer.echo(f"mkd: cannot read{where}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc


def _integer(option: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError as exc:
        raise CliError(f"{option} wants an integer (decimal or 0x…), not {value!r}", EXIT_INVALID) from exc


def resources_of(cpus: str | None, cpu_count: int | None, memory: str | None) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if cpus is not None:
        resources["cpus"] = parse_cpu_list(cpus)
    if cpu_count is not None:
        resources["cpu_count"] = cpu_count
    if memory is not None:
        resources["memory_bytes"] = parse_size(memory)
    return resources


def _headers(if_match: str | None = None, key: str | None = None) -> dict[str, str]:
    headers = {}
    if if_match:
        headers["If-Match"] = if_match
    if key:
        headers["Idempotency-Key"] = key
    return headers


@instances.command("list")
def list_instances(state: Annotated[str | None, typer.Option("--state")] = None,
                   output: OutputOpt = Format.table) -> None:
    """List instances."""
    def go() -> None:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if state:
                params["state"] = state.upper()
            if cursor:
                params["cursor"] = cursor
            page = call(target(), "GET", "/v1/instances", params=params).json()
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                break
        emit(items, output, instances_view)
    run(go)


@instances.command("get")
def get_instance(
    ref: str,
    etag: Annotated[bool, typer.Option("--etag", help="print only the ETag (for --if-match)")] = False,
    output: OutputOpt = Format.table,
) -> None:
    """Show one instance (id or name)."""
    def go() -> None:
        reply = call(target(), "GET", f"/v1/instances/{ref}")
        if etag:
            sys.stdout.write(reply.headers.get("etag", "") + "\n")
        else:
            emit(reply.json(), output, instance_view)
    run(go)


@instances.command("create")
def create_instance(
    name: Annotated[str | None, typer.Argument()] = None,
    cpus: CpusOpt = None,
    cpu_count: CpuCountOpt = None,
    memory: MemoryOpt = None,
    instance_id: Annotated[int | None, typer.Option("--id")] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="a DTS or DTB plan file")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    key: KeyOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Create an instance from options (--memory required), or several from a device-tree plan (--from)."""
    def go() -> None:
        params = {"dry_run": "true"} if dry_run else {}
        if from_file is not None:
            data = from_file.read_bytes()
            ctype = "application/x-dtb" if data[:4] == b"\xd0\x0d\xfe\xed" else "text/x-dts"
            reply = call(target(), "POST", "/v1/instances", content=data, params=params,
                         headers={"content-type": ctype, **_headers(key=key)})
        else:
            if not name:
                raise CliError("a NAME or --from FILE is needed", EXIT_INVALID)
            if memory is None:  # DESIGN "Shapes": memory_bytes is required
                raise CliError("--memory is needed (a size such as 256M or 1G)", EXIT_INVALID)
            body: dict[str, Any] = {"name": name, "resources": resources_of(cpus, cpu_count, memory)}
            if instance_id is not None:
                body["id"] = instance_id
            reply = call(target(), "POST", "/v1/instances", json=body, params=params, headers=_headers(key=key))
        emit(reply.json(), output, instance_view)
    run(go)


@instances.command("delete")
def delete_instance(ref: str, if_match: IfMatchOpt = None) -> None:
    """Delete an instance."""
    run(lambda: call(target(), "DELETE", f"/v1/instances/{ref}", headers=_headers(if_match)))


@instances.command("load")
def load_instance(
    ref: str,
    kernel: Annotated[str, typer.Option("--kernel", help="image sha256, or a file to upload first")],
    initrd: Annotated[str | None, typer.Option("--initrd")] = None,
    cmdline: Annotated[str | None, typer.Option("--cmdline")] = None,
    if_match: IfMatchOpt = None,
    key: KeyOpt = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Load a kernel (kexec_file_load); files are uploaded to the image store first."""
    def go() -> None:
        body: dict[str, Any] = {"kernel": _image_ref(kernel, progress)}
        if initrd:
            body["initrd"] = _image_ref(initrd, progress)
        if cmdline is not None:
            body["cmdline"] = cmdline
        emit(call(target(), "POST", f"/v1/instances/{ref}/load", json=body, headers=_headers(if_match, key)).json(),
             output, instance_view)
    run(go)


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _image_ref(value: str, progress: bool | None) -> str:
    """An existing file is uploaded first and replaced by its hash; anything else must be a hash."""
    path = Path(value)
    if path.is_file():
        sha: str = upload(target(), path, show_progress=progress)["sha256"]
        return sha
    if not _SHA256.fullmatch(value):
        raise CliError(f"{value}: no such file, and not an image sha256", EXIT_INVALID)
    return value.lower()


def _require(capability: str, what: str) -> None:
    """DESIGN "Host": the CLI, like the dashboard, does not offer what the kernel lacks."""
    host = call(target(), "GET", "/v1/host").json()
    if not host.get("capabilities", {}).get(capability, False):
        raise CliError(f"{what} is not available: the {host.get('kernel_profile')} kernel has no "
                       f"{capability.replace('_', ' ')} (GET /v1/host capabilities)", EXIT_INVALID)


def _action(ref: str, action: str, force: bool, if_match: str | None, key: str | None, output: Format) -> None:
    emit(call(target(), "POST", f"/v1/instances/{ref}/{action}", json={"force": force},
              headers=_headers(if_match, key)).json(), output, instance_view)


ForceOpt = Annotated[bool, typer.Option("--force")]


@instances.command("unload")
def unload_instance(ref: str, force: ForceOpt = False, if_match: IfMatchOpt = None, key: KeyOpt = None,
                    output: OutputOpt = Format.table) -> None:
    """Free the instance's kimage."""
    run(_action, ref, "unload", force, if_match, key, output)


@instances.command("start")
def start_instance(ref: str, if_match: IfMatchOpt = None, key: KeyOpt = None,
                   output: OutputOpt = Format.table) -> None:
    """Start the loaded kernel."""
    run(_action, ref, "start", False, if_match, key, output)


@instances.command("stop")
def stop_instance(ref: str, force: ForceOpt = False, if_match: IfMatchOpt = None, key: KeyOpt = None,
                  output: OutputOpt = Format.table) -> None:
    """Halt the instance (graceful, or --force)."""
    def go() -> None:
        _require("halt", "stop")
        _action(ref, "stop", force, if_match, key, output)
    run(go)


@instances.command("update")
def update_instance(
    ref: str,
    cpus: CpusOpt = None,
    cpu_count: CpuCountOpt = None,
    memory: MemoryOpt = None,
    if_match: IfMatchOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Hot-update an instance's resources (PATCH with the resources given; the others keep their value)."""
    def go() -> None:
        resources = resources_of(cpus, cpu_count, memory)
        if not resources:
            raise CliError("nothing to update: give --cpus, --cpu-count or --memory", EXIT_INVALID)
        _require("hot_update", "update")
        emit(call(target(), "PATCH", f"/v1/instances/{ref}", json={"resources": resources},
                  headers=_headers(if_match)).json(), output, instance_view)
    run(go)


@instances.command("device-tree")
def instance_device_tree(ref: str) -> None:
    """Print the instance's device tree (DTS)."""
    run(lambda: sys.stdout.write(call(target(), "GET", f"/v1/instances/{ref}/device-tree").text))


@images.command("upload")
def upload_image(path: Path, progress: ProgressOpt = None, output: OutputOpt = Format.table) -> None:
    """Upload an image file (streamed, with a progress bar on a terminal)."""
    run(lambda: emit(upload(target(), path, show_progress=progress), output, image_view))


@images.command("get")
def get_image(sha256: str, output: OutputOpt = Format.table) -> None:
    """Show one image (size, format)."""
    run(lambda: emit(call(target(), "GET", f"/v1/images/{sha256}").json(), output, image_view))


@images.command("list")
def list_images(output: OutputOpt = Format.table) -> None:
    """List stored images."""
    run(lambda: emit(call(target(), "GET", "/v1/images", params={"limit": 1000}).json()["items"], output,
                     images_view))


@images.command("delete")
def delete_image(sha256: str, if_match: IfMatchOpt = None) -> None:
    """Delete an image no kimage uses."""
    run(lambda: call(target(), "DELETE", f"/v1/images/{sha256}", headers=_headers(if_match)))


@images.command("prune")
def prune_images(output: OutputOpt = Format.table) -> None:
    """Delete every image no kimage and no spec uses."""

    run(lambda: emit(call(target(), "POST", "/v1/images/prune").json(), output, pruned_view))


@pool.command("get")
def get_pool(output: OutputOpt = Format.table) -> None:
    """Show the pool and what is free."""
    run(lambda: emit(call(target(), "GET", "/v1/pool").json(), output, pool_view))


@pool.command("put")
def put_pool(
    cpus: Annotated[str, typer.Option("--cpus", help="CPU ids and ranges, e.g. 2-15")],
    memory_base: Annotated[str, typer.Option("--memory-base", help="physical base: 0x100000000 or 4G")],
    memory_bytes: Annotated[str, typer.Option("--memory", "--memory-bytes", help="size: 1G, 0x40000000, bytes")],
    llc_way_mask: Annotated[str | None, typer.Option("--llc-way-mask")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    if_match: IfMatchOpt = None,
    output: OutputOpt = Format.table,
) -> None:
    """Reconcile the pool (idempotent)."""
    def go() -> None:
        body: dict[str, Any] = {"cpus": parse_cpu_list(cpus),
                                "memory_base": parse_size(memory_base, option="--memory-base"),
                                "memory_bytes": parse_size(memory_bytes)}
        if llc_way_mask is not None:
            body["llc_way_mask"] = _integer("--llc-way-mask", llc_way_mask)
        emit(call(target(), "PUT", "/v1/pool", json=body, params={"dry_run": "true"} if dry_run else {},
                  headers=_headers(if_match)).json(), output, pool_view)
    run(go)


@pool.command("device-tree")
def pool_device_tree(
    dtb: Annotated[Path | None, typer.Option("--dtb", help="write the DTB to this file instead")] = None,
) -> None:
    """Print the root device tree of the kernel profile (DTS), or save it as a DTB."""
    def go() -> None:
        if dtb is None:
            sys.stdout.write(call(target(), "GET", "/v1/pool/device-tree").text)
        else:
            dtb.write_bytes(call(target(), "GET", "/v1/pool/device-tree", params={"format": "dtb"}).content)
    run(go)


def host(output: OutputOpt = Format.table) -> None:
    """Show the backend, kernel profile, capabilities and topology."""
    run(lambda: emit(call(target(), "GET", "/v1/host").json(), output, host_view))


def events(
    last_event_id: Annotated[str | None, typer.Option("--last-event-id", help="replay after this id (0: all)")] = None,
    count: Annotated[int | None, typer.Option("--count", help="stop after this many events")] = None,
    output: OutputOpt = Format.table,
) -> None:
    """Follow the event stream: one line per event (-o json: one JSON object per line, -o yaml: documents)."""
    def go() -> None:
        seen = 0
        for event_id, kind, data in follow_events(target(), last_event_id):
            try:
                payload: Any = json.loads(data)
            except ValueError:
                payload = data
            number = int(event_id) if event_id.isdigit() else None
            line = {"id": number, "event": kind, "data": payload}
            if output is Format.json:
                sys.stdout.write(json.dumps(line) + "\n")
            elif output is Format.yaml:
                sys.stdout.write("---\n" + as_yaml(line))
            else:
                sys.stdout.write(event_line(number, kind, payload) + "\n")
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return
    run(go)


_PROBES = {"healthz": "/healthz", "readyz": "/readyz"}


def probe(
    which: Annotated[str, typer.Argument(help="healthz (the process answers) or readyz (start-up done)")],
    timeout: Annotated[float, typer.Option("--timeout", help="seconds before giving up")] = 5.0,
    retry_for: Annotated[float, typer.Option("--retry-for", help="ask again, once a second, this long")] = 0.0,
) -> None:
    """Ask /healthz or /readyz (for container probes): exit 0 when it answers 200, else not 0."""
    def go() -> None:
        if which not in _PROBES:
            raise CliError(f"probe wants healthz or readyz, not {which!r}", EXIT_INVALID)
        here = target()
        deadline = time.monotonic() + retry_for
        while True:
            try:
                answer = call(Target(url=here.url, socket=here.socket, token=here.token, timeout=timeout), "GET",
                              _PROBES[which])
                break
            except CliError:
                if time.monotonic() >= deadline:  # e.g. mkd-apply.service waits for the daemon at boot
                    raise
                time.sleep(1.0)
        sys.stdout.write(answer.text.strip() + "\n")
    run(go)


__all__ = ["events", "host", "images", "instances", "pool", "probe", "set_target"]


def apply_documents(
    file: Annotated[Path, typer.Option("--file", "-f", help="a YAML/JSON file, or a directory of them")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan, change nothing")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="delete declared instances the files do not name")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait until every instance has converged")] = False,
    progress: ProgressOpt = None,
) -> None:
    """Declare instances (and the pool) from documents: the plan first, then the changes."""
    run(lambda: declarative.apply(target(), file, dry_run=dry_run, prune=prune, wait=wait,
                                  show_progress=progress, echo=typer.echo))


def get_declared(name: str, output: OutputOpt = Format.yaml) -> None:
    """A declared instance's document (what `mkd apply` takes back unchanged)."""
    run(lambda: emit(declarative.get_document(target(), name), output, document_view))

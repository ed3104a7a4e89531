"""Client commands: each one HTTP call, the answer printed as JSON, refusals as exit codes."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mkd.cli.client import EXIT_INVALID, CliError, Target, call, follow_events, show, stream_file

UrlOpt = Annotated[str, typer.Option("--url", envvar="MKD_URL", help="daemon URL")]
SocketOpt = Annotated[Path | None, typer.Option("--socket", envvar="MKD_SOCKET", help="daemon unix socket")]
TokenOpt = Annotated[str | None, typer.Option("--token", envvar="MKD_TOKEN", help="bearer token")]
IfMatchOpt = Annotated[str | None, typer.Option("--if-match", help="ETag the instance must still have")]
KeyOpt = Annotated[str | None, typer.Option("--idempotency-key", help="makes a retried POST safe")]

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
    except OSError as exc:  # a local file the command was given cannot be read
        where = f" {exc.filename}" if exc.filename else ""
        typer.echo(f"mkd: cannot read{where}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_INVALID) from exc


def _int_list(option: str, value: str) -> list[int]:
    """`--cpus 2,3,4` -> [2, 3, 4]; anything else is invalid input (exit 5), not a traceback."""
    try:
        return [int(c, 0) for c in value.split(",") if c.strip()]
    except ValueError as exc:
        raise CliError(f"{option} wants comma-separated integers, not {value!r}", EXIT_INVALID) from exc


def _headers(if_match: str | None = None, key: str | None = None) -> dict[str, str]:
    headers = {}
    if if_match:
        headers["If-Match"] = if_match
    if key:
        headers["Idempotency-Key"] = key
    return headers


@instances.command("list")
def list_instances(state: Annotated[str | None, typer.Option("--state")] = None) -> None:
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
        show(items)
    run(go)


@instances.command("get")
def get_instance(
    ref: str,
    etag: Annotated[bool, typer.Option("--etag", help="print only the ETag (for --if-match)")] = False,
) -> None:
    """Show one instance (id or name)."""
    def go() -> None:
        reply = call(target(), "GET", f"/v1/instances/{ref}")
        if etag:
            sys.stdout.write(reply.headers.get("etag", "") + "\n")
        else:
            show(reply.json())
    run(go)


@instances.command("create")
def create_instance(
    name: Annotated[str | None, typer.Argument()] = None,
    cpus: Annotated[str | None, typer.Option("--cpus", help="comma-separated CPU ids")] = None,
    cpu_count: Annotated[int | None, typer.Option("--cpu-count")] = None,
    memory: Annotated[int | None, typer.Option("--memory-bytes", help="required with NAME")] = None,
    instance_id: Annotated[int | None, typer.Option("--id")] = None,
    from_file: Annotated[Path | None, typer.Option("--from", help="a DTS or DTB plan file")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    key: KeyOpt = None,
) -> None:
    """Create an instance from options, or several from a device-tree plan (--from)."""
    def go() -> None:
        params = {"dry_run": "true"} if dry_run else {}
        if from_file is not None:
            data = from_file.read_bytes()
            ctype = "application/x-dtb" if data[:4] == b"\xd0\x0d\xfe\xed" else "text/x-dts"
            reply = call(target(), "POST", "/v1/instances", content=data, params=params,
                         headers={"content-type": ctype, **_headers(key=key)})
        else:
            if not name:
                raise CliError("a NAME or --from FILE is needed", 5)
            if memory is None:
                raise CliError("--memory-bytes is needed: an instance's memory is required", 5)
            resources: dict[str, Any] = {"memory_bytes": memory}
            if cpus:
                resources["cpus"] = _int_list("--cpus", cpus)
            if cpu_count is not None:
                resources["cpu_count"] = cpu_count
            body: dict[str, Any] = {"name": name, "resources": resources}
            if instance_id is not None:
                body["id"] = instance_id
            reply = call(target(), "POST", "/v1/instances", json=body, params=params, headers=_headers(key=key))
        show(reply.json())
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
) -> None:
    """Load a kernel (kexec_file_load); files are uploaded to the image store first."""
    def go() -> None:
        body: dict[str, Any] = {"kernel": _image_ref(kernel)}
        if initrd:
            body["initrd"] = _image_ref(initrd)
        if cmdline is not None:
            body["cmdline"] = cmdline
        show(call(target(), "POST", f"/v1/instances/{ref}/load", json=body,
                  headers=_headers(if_match, key)).json())
    run(go)


_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _image_ref(value: str) -> str:
    """An existing file is uploaded first and replaced by its hash; anything else must be a hash."""
    path = Path(value)
    if path.is_file():
        reply = call(target(), "POST", "/v1/images", content=stream_file(path),
                     headers={"content-type": "application/octet-stream"})
        sha: str = reply.json()["sha256"]
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


def _action(ref: str, action: str, force: bool, if_match: str | None, key: str | None) -> None:
    show(call(target(), "POST", f"/v1/instances/{ref}/{action}", json={"force": force},
              headers=_headers(if_match, key)).json())


ForceOpt = Annotated[bool, typer.Option("--force")]


@instances.command("unload")
def unload_instance(ref: str, force: ForceOpt = False, if_match: IfMatchOpt = None, key: KeyOpt = None) -> None:
    """Free the instance's kimage."""
    run(_action, ref, "unload", force, if_match, key)


@instances.command("start")
def start_instance(ref: str, if_match: IfMatchOpt = None, key: KeyOpt = None) -> None:
    """Start the loaded kernel."""
    run(_action, ref, "start", False, if_match, key)


@instances.command("stop")
def stop_instance(ref: str, force: ForceOpt = False, if_match: IfMatchOpt = None, key: KeyOpt = None) -> None:
    """Halt the instance (graceful, or --force)."""
    def go() -> None:
        _require("halt", "stop")
        _action(ref, "stop", force, if_match, key)
    run(go)


@instances.command("update")
def update_instance(
    ref: str,
    cpus: Annotated[str | None, typer.Option("--cpus", help="comma-separated CPU ids")] = None,
    cpu_count: Annotated[int | None, typer.Option("--cpu-count")] = None,
    memory: Annotated[int | None, typer.Option("--memory-bytes")] = None,
    if_match: IfMatchOpt = None,
) -> None:
    """Hot-update an instance's resources (a merge patch: what is not given keeps its value)."""
    def go() -> None:
        _require("hot_update", "update")
        resources: dict[str, Any] = {}
        if memory is not None:
            resources["memory_bytes"] = memory
        if cpus:
            resources["cpus"] = _int_list("--cpus", cpus)
        if cpu_count is not None:
            resources["cpu_count"] = cpu_count
        show(call(target(), "PATCH", f"/v1/instances/{ref}", json={"resources": resources},
                  headers=_headers(if_match)).json())
    run(go)


@instances.command("device-tree")
def instance_device_tree(ref: str) -> None:
    """Print the instance's device tree (DTS)."""
    run(lambda: sys.stdout.write(call(target(), "GET", f"/v1/instances/{ref}/device-tree").text))


@images.command("upload")
def upload_image(path: Path) -> None:
    """Upload an image file (streamed)."""
    run(lambda: show(call(target(), "POST", "/v1/images", content=stream_file(path),
                          headers={"content-type": "application/octet-stream"}).json()))


@images.command("get")
def get_image(sha256: str) -> None:
    """Show one image (size, format)."""
    run(lambda: show(call(target(), "GET", f"/v1/images/{sha256}").json()))


@images.command("list")
def list_images() -> None:
    """List stored images."""
    run(lambda: show(call(target(), "GET", "/v1/images", params={"limit": 1000}).json()["items"]))


@images.command("delete")
def delete_image(sha256: str, if_match: IfMatchOpt = None) -> None:
    """Delete an image no kimage uses."""
    run(lambda: call(target(), "DELETE", f"/v1/images/{sha256}", headers=_headers(if_match)))


@pool.command("get")
def get_pool() -> None:
    """Show the pool and what is free."""
    run(lambda: show(call(target(), "GET", "/v1/pool").json()))


@pool.command("put")
def put_pool(
    cpus: Annotated[str, typer.Option("--cpus", help="comma-separated CPU ids")],
    memory_base: Annotated[str, typer.Option("--memory-base", help="physical base (0x… accepted)")],
    memory_bytes: Annotated[str, typer.Option("--memory-bytes")],
    llc_way_mask: Annotated[str | None, typer.Option("--llc-way-mask")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    if_match: IfMatchOpt = None,
) -> None:
    """Reconcile the pool (idempotent)."""
    def go() -> None:
        try:
            body: dict[str, Any] = {"cpus": _int_list("--cpus", cpus),
                                    "memory_base": int(memory_base, 0), "memory_bytes": int(memory_bytes, 0)}
            if llc_way_mask is not None:
                body["llc_way_mask"] = int(llc_way_mask, 0)
        except ValueError as exc:
            raise CliError(f"bad number: {exc}", 5) from exc
        show(call(target(), "PUT", "/v1/pool", json=body, params={"dry_run": "true"} if dry_run else {},
                  headers=_headers(if_match)).json())
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


def host() -> None:
    """Show the backend, kernel profile, capabilities and topology."""
    run(lambda: show(call(target(), "GET", "/v1/host").json()))


def events(
    last_event_id: Annotated[str | None, typer.Option("--last-event-id", help="replay after this id (0: all)")] = None,
    count: Annotated[int | None, typer.Option("--count", help="stop after this many events")] = None,
) -> None:
    """Follow the event stream, one JSON line per event."""
    def go() -> None:
        seen = 0
        for event_id, kind, data in follow_events(target(), last_event_id):
            try:
                payload: Any = json.loads(data)
            except ValueError:
                payload = data
            line = {"id": int(event_id) if event_id.isdigit() else None, "event": kind, "data": payload}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            seen += 1
            if count is not None and seen >= count:
                return
    run(go)


__all__ = ["events", "host", "images", "instances", "pool", "set_target"]

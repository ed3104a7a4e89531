"""`mkd console NAME` and `mkd run NAME --kernel FILE …` (DESIGN "Desired state", CLI).

console follows GET /v1/instances/{ref}/console (SSE) and prints each line; when the connection
drops (a daemon restart, a network cut) it reconnects with the last event's id as Last-Event-ID,
so nothing is printed twice or skipped (the id is the console's byte offset, global across boots
and daemon restarts). run declares an instance from its options, applies it as `mkd apply` does
(upload, plan, wait until ACTIVE), then follows its console; under tree the reconciler boots it
with `console=mktty0` unless the command line names a console.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from httpx_sse import SSEError, connect_sse

from mkd.cli.client import EXIT_UNREACHABLE, CliError, Target, raise_for
from mkd.cli.commands import CpuCountOpt, CpusOpt, MemoryOpt, ProgressOpt, resources_of, run, target
from mkd.cli.declarative import Document, apply_documents

RECONNECT_S = 1.0  # between two attempts while the daemon is away
RECONNECT_FOR_S = 300.0  # give up when it has not answered for this long


def follow_console(target: Target, ref: str, *, last_event_id: str | None, echo: Callable[[str], None],
                   note: Callable[[str], None], reconnect_for_s: float = RECONNECT_FOR_S) -> None:
    """Print the console's lines as they come; resume after a dropped connection. Returns when the
    daemon answers with a problem (the instance is gone: 404) — raised as CliError — never else."""
    last = last_event_id
    away_since: float | None = None
    while True:
        headers = {"Last-Event-ID": last} if last is not None else {}
        try:
            with target.client() as http, connect_sse(http, "GET", f"/v1/instances/{ref}/console",
                                                      headers=headers, timeout=httpx.Timeout(30.0, read=None)
                                                      ) as source:
                status = source.response.status_code
                if status in (429, 503):  # too many streams, or a daemon still starting: come back
                    source.response.read()
                    raise _Later(float(source.response.headers.get("Retry-After", RECONNECT_S)))
                if status >= 400:
                    source.response.read()
                    raise_for(source.response)
                if away_since is not None:
                    note("mkd: console connection back")
                away_since = None
                for sse in source.iter_sse():
                    if sse.event != "line":
                        continue  # a heartbeat comment
                    echo(sse.data)
                    last = sse.id or last
            wait_s = RECONNECT_S  # the stream ended: the daemon stopped (or the connection dropped)
        except _Later as later:
            wait_s = later.seconds
        except (httpx.TransportError, SSEError) as exc:
            if away_since is not None and time.monotonic() - away_since > reconnect_for_s:
                where = f"unix:{target.socket}" if target.socket else target.url
                raise CliError(f"cannot reach mkd at {where}: {exc}", EXIT_UNREACHABLE) from exc
            wait_s = RECONNECT_S
        if away_since is None:
            away_since = time.monotonic()
            note("mkd: console connection lost, reconnecting" + (f" after offset {last}" if last else ""))
        time.sleep(wait_s)


class _Later(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"again in {seconds} s")
        self.seconds = seconds


def console_text(target: Target, ref: str) -> str:
    with target.client() as http:
        try:
            reply = http.get(f"/v1/instances/{ref}/console", params={"follow": "false"})
        except httpx.TransportError as exc:
            raise CliError(f"cannot reach mkd: {exc}", EXIT_UNREACHABLE) from exc
    raise_for(reply)
    return reply.text


def run_document(name: str, *, kernel: Path, initrd: Path | None, cmdline: str,
                 resources: dict[str, Any]) -> Document:
    """The Instance document `mkd run` applies (local images: uploaded by apply)."""
    spec: dict[str, Any] = {"kernel": str(kernel.resolve()), "cmdline": cmdline, "resources": resources,
                            "state": "Active"}
    if initrd is not None:
        spec["initrd"] = str(initrd.resolve())
    body = {"apiVersion": "mkd.dev/v1", "kind": "Instance", "metadata": {"name": name}, "spec": spec}
    return Document(Path.cwd() / f"mkd-run-{name}", body)


def run_instance(target: Target, document: Document, *, show_progress: bool | None,
                 echo: Callable[[str], None], note: Callable[[str], None]) -> None:
    apply_documents(target, [document], dry_run=False, prune=False, wait=True, show_progress=show_progress,
                    echo=note)
    follow_console(target, document.name, last_event_id=None, echo=echo, note=note)


def print_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def print_note(text: str) -> None:
    typer.echo(text, err=True)


def console(
    ref: Annotated[str, typer.Argument(help="instance name or id")],
    follow: Annotated[bool, typer.Option(
        "--follow/--no-follow", help="--no-follow: print the kept history (current and previous boot)")] = True,
    last_event_id: Annotated[str | None, typer.Option("--last-event-id",
                                                      help="resume after this byte offset (0: all kept)")] = None,
) -> None:
    """Follow an instance's console (resumes by itself after a dropped connection)."""
    def go() -> None:
        if not follow:
            sys.stdout.write(console_text(target(), ref))
            return
        follow_console(target(), ref, last_event_id=last_event_id, echo=print_line, note=print_note)
    run(go)


def run_command(
    name: Annotated[str, typer.Argument(help="the instance's name")],
    kernel: Annotated[Path, typer.Option("--kernel", help="the kernel image file")],
    memory: MemoryOpt,
    initrd: Annotated[Path | None, typer.Option("--initrd", help="an initrd file")] = None,
    cmdline: Annotated[str, typer.Option("--cmdline", help="the kernel command line")] = "",
    cpus: CpusOpt = None,
    cpu_count: CpuCountOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Declare an instance, wait until it is ACTIVE, then follow its console (Ctrl-C leaves it running)."""
    def go() -> None:
        document = run_document(name, kernel=kernel, initrd=initrd, cmdline=cmdline,
                                resources=resources_of(cpus, cpu_count, memory))
        run_instance(target(), document, show_progress=progress, echo=print_line, note=print_note)
    run(go)

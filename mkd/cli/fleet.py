"""`mkd fleet nodes|get|apply|delete|drain|uncordon` (DESIGN "Fleet", CLI): the fleet through the
node the CLI talks to. Every write goes to the fleet (etcd) through that node; `apply` first
uploads kernels and initrds given as local paths to that node, which then serves them to the
peer an instance is placed on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mkd.cli import declarative
from mkd.cli.client import EXIT_INVALID, CliError, Target, call
from mkd.cli.commands import ProgressOpt, run, target
from mkd.cli.fleet_views import instance_view, instances_view, node_view, nodes_view
from mkd.cli.output import Format, OutputOpt, emit

fleet = typer.Typer(no_args_is_help=True, help="The fleet: instances placed across many mkd daemons.")

NODES = "/v1/fleet/nodes"
INSTANCES = "/v1/fleet/instances"


@fleet.command("nodes")
def list_nodes(output: OutputOpt = Format.table) -> None:
    """The fleet's nodes: live or lost, cordoned or not, and what each has free."""
    run(lambda: emit(call(target(), "GET", NODES).json(), output, nodes_view))


@fleet.command("get")
def get_instances(name: Annotated[str | None, typer.Argument(help="one instance; all when left out")] = None,
                  output: OutputOpt = Format.table) -> None:
    """The fleet's instances (or one), each with its phase and the node it runs on."""
    if name is None:
        run(lambda: emit(call(target(), "GET", INSTANCES).json(), output, instances_view))
    else:
        run(lambda: emit(call(target(), "GET", f"{INSTANCES}/{name}").json(), output, instance_view))


def fleet_documents(path: Path) -> list[declarative.Document]:
    """The Instance documents of FILE or DIR; a Pool belongs to one node (`mkd apply`), not the fleet."""
    documents = declarative.read_documents(path)
    pools = [d for d in documents if d.kind != "Instance"]
    if pools:
        raise CliError(f"{pools[0].source}: a Pool belongs to one node (mkd apply); the fleet takes Instance "
                       "documents only", EXIT_INVALID)
    return documents


def apply(here: Target, path: Path, *, show_progress: bool | None, echo: Any) -> None:
    documents = fleet_documents(path)
    for document in documents:
        declarative.upload_local_images(here, document, show_progress=show_progress)
    for document in documents:
        reply = call(here, "PUT", f"{INSTANCES}/{document.name}", json=document.body)
        echo(f"{'+ created' if reply.status_code == 201 else '~ applied'} {document.name}")


@fleet.command("apply")
def apply_documents(
    file: Annotated[Path, typer.Option("--file", "-f", help="a YAML/JSON file, or a directory of them")],
    progress: ProgressOpt = None,
) -> None:
    """Declare fleet instances from Instance documents (local kernel paths are uploaded first)."""
    run(lambda: apply(target(), file, show_progress=progress, echo=typer.echo))


@fleet.command("delete")
def delete_instance(name: str, output: OutputOpt = Format.table) -> None:
    """Delete a fleet instance: the node that runs it drives it down, then it is gone."""
    run(lambda: emit(call(target(), "DELETE", f"{INSTANCES}/{name}").json(), output, instance_view))


@fleet.command("drain")
def drain_node(node: str, output: OutputOpt = Format.table) -> None:
    """Cordon a node and move what may move; fails (exit 4) naming what cannot move."""
    run(lambda: emit(call(target(), "POST", f"{NODES}/{node}/drain").json(), output, node_view))


@fleet.command("uncordon")
def uncordon_node(node: str, output: OutputOpt = Format.table) -> None:
    """Let the scheduler place instances on a node again."""
    run(lambda: emit(call(target(), "POST", f"{NODES}/{node}/uncordon").json(), output, node_view))

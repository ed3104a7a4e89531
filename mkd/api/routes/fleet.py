"""The fleet (DESIGN "Fleet", API on every node): nodes, fleet instances, drain and uncordon.

Every write goes to etcd through the FleetSurface, never to a peer. Without `[fleet]` every
route answers 404 (FleetNotConfigured); with etcd unreachable, 503 with Retry-After. Fleet
routes take no Idempotency-Key: a PUT of the same document is idempotent by itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mkd.api.deps import FleetDep, read_body
from mkd.api.documents import MAX_DOCUMENT_BYTES, YAML_TYPES, fleet_instance_document, load_body
from mkd.api.responses import problems
from mkd.api.schemas import FleetInstanceList, FleetInstanceOut, FleetNodeList, FleetNodeOut
from mkd.domain.names import NAME_PATTERN, is_numeric_ref
from mkd.errors import InvalidInput, errno_value
from mkd.etags import etag_of_json

router = APIRouter(prefix="/v1/fleet", tags=["fleet"])

PREFIX = router.prefix + "/"  # the idempotency middleware passes these paths through

InstanceName = Annotated[str, Path(pattern=NAME_PATTERN)]
NodeName = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]

_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/FleetInstanceDocument"}},
            **{kind: {"schema": {"type": "string"}} for kind in YAML_TYPES[:1]},
        },
    }
}


def _list(items: list[dict[str, Any]]) -> JSONResponse:
    body = {"items": items}
    return JSONResponse(body, headers={"ETag": etag_of_json(body)})


def _instance(document: dict[str, Any], status_code: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(document, status_code=status_code, headers={"ETag": etag_of_json(document), **headers})


@router.get("/nodes", response_model=FleetNodeList, responses=problems(404, 503))
async def list_nodes(fleet: FleetDep) -> Response:
    """List the fleet's nodes: live ones and cordoned ones."""
    return _list(await fleet.nodes())


@router.get("/instances", response_model=FleetInstanceList, responses=problems(404, 503))
async def list_instances(fleet: FleetDep) -> Response:
    """List the fleet's instances, each with its status (node and phase)."""
    return _list(await fleet.instances())


@router.get("/instances/{name}", response_model=FleetInstanceOut, responses=problems(404, 422, 503))
async def read_instance(name: InstanceName, fleet: FleetDep) -> Response:
    """Read one fleet instance document with its status."""
    return _instance(await fleet.get_instance(name))


@router.put("/instances/{name}", status_code=200, response_model=FleetInstanceOut, openapi_extra=_DOCUMENT_BODY,
            responses={201: {"model": FleetInstanceOut}, **problems(404, 409, 413, 422, 503)})
async def put_instance(name: InstanceName, request: Request, fleet: FleetDep) -> Response:
    """Declare a fleet instance (an Instance document, JSON or YAML): 201 created, 200 replaced."""
    if is_numeric_ref(name):  # it becomes a declared instance of that name on its node: a name, never an id
        raise InvalidInput(f"a fleet instance needs a name, not the number {name!r}",
                           extra={"errno": "EINVAL", "errno_value": errno_value("EINVAL")})
    body = await read_body(request, MAX_DOCUMENT_BYTES)
    raw = load_body(body, request.headers.get("content-type", "application/json"))
    doc = await run_in_threadpool(fleet_instance_document, raw, request)
    if doc.metadata.name != name:
        raise InvalidInput(f"metadata.name {doc.metadata.name!r} is not the name in the path {name!r}")
    # What the client wrote (defaults left out, so the same document stays the same), minus a status read back.
    document = doc.model_dump(mode="json", exclude_unset=True, exclude={"status"})
    stored, created = await fleet.put_instance(name, document)
    if created:
        return _instance(stored, 201, Location=f"{router.prefix}/instances/{name}")
    return _instance(stored)


@router.delete("/instances/{name}", status_code=202, response_model=FleetInstanceOut,
               responses=problems(404, 409, 422, 503))
async def delete_instance(name: InstanceName, fleet: FleetDep) -> Response:
    """Delete a fleet instance: the node that runs it drives it down first (202)."""
    return _instance(await fleet.delete_instance(name), 202)


@router.post("/nodes/{node}/drain", status_code=202, response_model=FleetNodeOut,
             responses=problems(404, 409, 422, 503))
async def drain_node(node: NodeName, fleet: FleetDep) -> Response:
    """Cordon a node and move what may move; 409 naming the instances that cannot."""
    return JSONResponse(await fleet.drain(node), status_code=202)


@router.post("/nodes/{node}/uncordon", status_code=202, response_model=FleetNodeOut,
             responses=problems(404, 422, 503))
async def uncordon_node(node: NodeName, fleet: FleetDep) -> Response:
    """Let the scheduler place instances on the node again."""
    return JSONResponse(await fleet.uncordon(node), status_code=202)

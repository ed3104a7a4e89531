"""Instances: list, create (JSON or device tree), read, hot-update, delete, device tree."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from mkd.api.deps import DaemonDep, IfMatch, ReadingDaemonDep, read_body
from mkd.api.prebuilt import json_response
from mkd.api.problems import validation_problem
from mkd.api.responses import INSTANCE_LINKS, problems
from mkd.api.schemas import (
    InstanceCreate,
    InstanceItems,
    InstanceList,
    InstanceOut,
    InstanceUpdate,
    ResourcesIn,
)
from mkd.devicetree.parse import parse_instance_plan
from mkd.domain.requests import InstanceRequest, ResourceRequest
from mkd.domain.states import InstanceState
from mkd.errors import InvalidInput
from mkd.services import desired, device_trees
from mkd.services import instances as service

router = APIRouter(prefix="/v1", tags=["instances"])

JSON_TYPES = ("application/json",)
DT_TYPES = ("text/plain", "text/x-dts", "application/octet-stream", "application/x-dtb")

_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": InstanceCreate.model_json_schema(ref_template="#/components/schemas/{model}")
            },
            "text/x-dts": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/x-dtb": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def resource_request(res: ResourcesIn) -> ResourceRequest:
    return ResourceRequest(
        cpus=tuple(res.cpus) if res.cpus is not None else None, cpu_count=res.cpu_count,
        numa_nodes=tuple(res.numa_nodes) if res.numa_nodes is not None else None,
        cpu_affinity=res.cpu_affinity, memory_bytes=res.memory_bytes, memory_policy=res.memory_policy,
        llc_way_mask=res.llc_way_mask, llc_ways=res.llc_ways, devices=tuple(res.devices),
    )


_PATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/InstanceUpdate"}}
            for media in ("application/merge-patch+json", "application/json")
        },
    }
}


@router.get("/instances", response_model=InstanceList, response_model_exclude_unset=True, responses=problems(422))
async def list_instances(
    daemon: ReadingDaemonDep,
    state: Annotated[InstanceState | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    label: Annotated[list[Annotated[str, StringConstraints(max_length=128)]] | None,
                     Query(max_length=16, description="k=v; every one must match")] = None,
) -> Response:
    """List instances, oldest id first."""
    page = service.list_instances(daemon=daemon, state=state, limit=limit, cursor=cursor,
                                  labels=label_selector(label or []))
    return json_response(page.body, page.etag)


def label_selector(pairs: list[str]) -> dict[str, str]:
    selector: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"label selector {pair!r} is not k=v")
        selector[key] = value
    return selector


@router.post("/instances", status_code=201, response_model=InstanceOut | InstanceItems, openapi_extra=_CREATE_BODY,
             responses={200: {"model": InstanceOut | InstanceItems,
                              "description": "dry run: the would-be result in the real call's shape"},
                        201: {"links": INSTANCE_LINKS},
                        **problems(404, 409, 413, 415, 422)})
async def create_instances(
    request: Request, daemon: DaemonDep, dry_run: Annotated[bool, Query()] = False
) -> Response:
    """Create one instance from JSON, or one or more from a device tree (all or nothing)."""
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    limits = daemon.settings.limits
    body = await read_body(request, max(limits.max_dt_bytes, limits.max_json_bytes))
    if content_type in JSON_TYPES:
        try:
            # Off the event loop: a 1 MiB body of bad keys takes a second to validate.
            parsed = await run_in_threadpool(InstanceCreate.model_validate_json, body or b"null")
        except ValidationError as exc:
            raise validation_problem(exc, request) from exc
        requests = [InstanceRequest(name=parsed.name, id=parsed.id, resources=resource_request(parsed.resources))]
        from_tree = False
    elif content_type in DT_TYPES:
        # dtc and libfdt run off the event loop (DESIGN "Limits"): probes and streams stay responsive.
        requests = await run_in_threadpool(parse_instance_plan, body, max_bytes=limits.max_dt_bytes)
        from_tree = True
    else:
        raise InvalidInput(f"content type {content_type!r} is not JSON, DTS or DTB", status=415,
                           slug="unsupported-media-type", title="Unsupported media type")
    created = await run_in_threadpool(service.create_instances, daemon=daemon, requests=requests,
                                      dry_run=dry_run, as_items=from_tree)
    if dry_run:
        # DESIGN "HTTP API": the shape the real call answers (JSON: one instance), nothing stored.
        would_be = [item for item, _ in created]
        return JSONResponse({"items": would_be} if from_tree else would_be[0], status_code=200)
    if from_tree:
        return JSONResponse({"items": [item for item, _ in created]}, status_code=201)
    item, etag = created[0]
    return JSONResponse(item, status_code=201,
                        headers={"Location": f"/v1/instances/{item['id']}", "ETag": etag})


@router.get("/instances/{ref}", response_model=InstanceOut, response_model_exclude_unset=True,
            responses={200: {"links": INSTANCE_LINKS}, **problems(404, 422)})
async def read_instance(
    ref: str, daemon: ReadingDaemonDep,
    format: Annotated[Literal["instance", "document"], Query()] = "instance",
) -> Response:
    """Read one instance by id or name (`?format=document`: a declared instance's document)."""
    if format == "document":
        document, etag = await run_in_threadpool(desired.get_document, daemon=daemon, ref=ref)
        return JSONResponse(document, headers={"ETag": etag})
    view = service.get_instance(daemon=daemon, ref=ref)
    return json_response(view.body, view.etag)


@router.patch("/instances/{ref}", response_model=InstanceOut, response_model_exclude_unset=True,
              openapi_extra=_PATCH_BODY, responses={200: {"links": INSTANCE_LINKS}, **problems(404, 409, 412, 422)})
def update_instance(
    ref: str, body: InstanceUpdate, daemon: DaemonDep, response: Response, if_match: IfMatch = None
) -> dict[str, Any]:
    """Hot-update an instance's resources in the kernel's order (a JSON merge patch, RFC 7396)."""
    result, etag = service.update_instance(daemon=daemon, ref=ref, changes=body.resources.changes(),
                                           if_match=if_match)
    response.headers["ETag"] = etag
    return result


@router.delete("/instances/{ref}", status_code=204, responses={202: {}, **problems(404, 409, 412, 422)})
def delete_instance(ref: str, daemon: DaemonDep, if_match: IfMatch = None) -> Response:
    """Delete an instance (EMPTY, READY or FAILED); a declared one from any state (202)."""
    deleted = service.delete_instance(daemon=daemon, ref=ref, if_match=if_match)
    return Response(status_code=204 if deleted else 202)


@router.get("/instances/{ref}/device-tree",
            responses={200: {"content": {"text/plain": {}, "application/x-dtb": {}}}, **problems(404, 422)})
def read_instance_device_tree(
    ref: str, daemon: DaemonDep, format: Annotated[Literal["dts", "dtb"], Query()] = "dts"
) -> Response:
    """The instance's device tree."""
    return device_trees.instance_tree(daemon=daemon, ref=ref, format=format)

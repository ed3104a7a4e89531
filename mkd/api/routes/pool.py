"""The pool (baseline): GET, PUT (idempotent reconcile), and its device tree."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from mkd.api.deps import DaemonDep, IfMatch, read_body
from mkd.api.documents import MAX_DOCUMENT_BYTES, load_body, pool_body
from mkd.api.prebuilt import json_response
from mkd.api.responses import problems
from mkd.api.schemas import PoolOut, PoolPutOut
from mkd.kernel_types import PoolSpec
from mkd.services import device_trees
from mkd.services import pool as pool_service

router = APIRouter(prefix="/v1", tags=["pool"])


@router.get("/pool", response_model=PoolOut, responses=problems(503))
async def read_pool(daemon: DaemonDep) -> Response:
    """Read the baseline and what is free."""
    pool = daemon.reads.pool_current()
    if pool is None:  # a change since the last read: the kernel's view is read off the loop
        pool = await run_in_threadpool(pool_service.read_pool, daemon=daemon)
    return json_response(pool.body, pool.etag)


_POOL_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/PoolIn"}, {"$ref": "#/components/schemas/PoolDocument"}]}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


@router.put("/pool", response_model=PoolPutOut, status_code=200, openapi_extra=_POOL_BODY,
            responses={201: {"model": PoolPutOut}, **problems(409, 412, 413, 422)})
async def put_pool(
    request: Request, daemon: DaemonDep, response: Response,
    dry_run: Annotated[bool, Query()] = False, if_match: IfMatch = None,
) -> dict[str, Any]:
    """Reconcile the baseline (a pool body, or a `kind: Pool` document, JSON or YAML): the same
    body twice changes nothing and says so."""
    raw = load_body(await read_body(request, MAX_DOCUMENT_BYTES), request.headers.get("content-type", ""))
    body = await run_in_threadpool(pool_body, raw, request)
    spec = PoolSpec(cpus=tuple(body.cpus), memory_base=body.memory_base, memory_bytes=body.memory_bytes,
                    llc_way_mask=body.llc_way_mask, devices=tuple(body.devices))
    result = await run_in_threadpool(pool_service.put_pool, daemon=daemon, spec=spec, dry_run=dry_run,
                                     if_match=if_match)
    response.status_code = 201 if result.created else 200
    response.headers["ETag"] = result.etag
    return {"changed": result.changed, "diff": result.diff, "pool": result.pool}


@router.get("/pool/device-tree", responses={200: {"content": {"text/plain": {}, "application/x-dtb": {}}},
                                             **problems(422)})
def read_pool_device_tree(
    daemon: DaemonDep, format: Annotated[Literal["dts", "dtb"], Query()] = "dts"
) -> Response:
    """The root device tree of the active kernel profile."""
    dtb = device_trees.root_tree(daemon=daemon)
    return device_trees.tree_response(dtb, format)

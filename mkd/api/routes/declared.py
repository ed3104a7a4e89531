"""Declared instances (DESIGN "Desired state"): PUT a document, and wait for a condition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from mkd.api.deps import DaemonDep, IfMatch, read_body
from mkd.api.documents import MAX_DOCUMENT_BYTES, YAML_TYPES, InstanceDocument, instance_document, load_body
from mkd.api.responses import problems
from mkd.api.schemas import InstanceOut
from mkd.domain.desired.plan import DesiredState
from mkd.domain.desired.restart import Backoff, RestartPolicy
from mkd.domain.desired.spec import DeclaredSpec
from mkd.domain.names import is_numeric_ref
from mkd.domain.states import InstanceState
from mkd.errors import InvalidInput, errno_value
from mkd.services import desired as service
from mkd.services import waiting

router = APIRouter(prefix="/v1", tags=["instances"])

MAX_WAIT_S = 300

_DOCUMENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InstanceDocument"}},
            **{kind: {"schema": {"type": "string"}} for kind in YAML_TYPES[:1]},
        },
    }
}


def declared_spec(doc: InstanceDocument) -> DeclaredSpec:
    spec = doc.spec
    return DeclaredSpec(
        resources=spec.resources.model_dump(mode="json"), kernel=spec.kernel, initrd=spec.initrd,
        cmdline=spec.cmdline, state=DesiredState(spec.state), restart_policy=RestartPolicy(spec.restartPolicy),
        backoff=Backoff(spec.restartBackoff.initial_s, spec.restartBackoff.max_s), max_restarts=spec.maxRestarts,
        update_strategy=spec.updateStrategy, paused=spec.paused, id=spec.id,
    )


@router.put("/instances/{ref}", status_code=200, response_model=InstanceOut, openapi_extra=_DOCUMENT_BODY,
            responses={201: {"model": InstanceOut}, **problems(404, 409, 412, 413, 422)})
async def put_instance(
    ref: str, request: Request, daemon: DaemonDep, if_match: IfMatch = None,
    dry_run: Annotated[bool, Query()] = False,
) -> Response:
    """Declare an instance (an Instance document, JSON or YAML): create, adopt or replace."""
    if is_numeric_ref(ref):
        raise InvalidInput(f"PUT takes an instance name, not the id {ref!r}",
                           extra={"errno": "EINVAL", "errno_value": errno_value("EINVAL")})
    body = await read_body(request, MAX_DOCUMENT_BYTES)
    raw = load_body(body, request.headers.get("content-type", "application/json"))
    doc = await run_in_threadpool(instance_document, raw, request)
    if doc.metadata.name != ref:
        raise InvalidInput(f"metadata.name {doc.metadata.name!r} is not the name in the path {ref!r}")
    applied = await run_in_threadpool(
        service.apply_document, daemon=daemon, name=ref, labels=dict(doc.metadata.labels),
        spec=declared_spec(doc), dry_run=dry_run, if_match=if_match,
    )
    if dry_run:
        return JSONResponse(applied.body, status_code=200)
    headers = {"ETag": applied.etag}
    if applied.created:
        headers["Location"] = f"/v1/instances/{applied.body['id']}"
    return JSONResponse(applied.body, status_code=201 if applied.created else 200, headers=headers)


@router.get("/instances/{ref}/wait", response_model=InstanceOut, responses={204: {}, **problems(404, 409, 422, 429)})
async def wait_instance(
    ref: str, daemon: DaemonDep,
    state: Annotated[InstanceState | None, Query()] = None,
    generation: Annotated[int | None, Query(ge=1, le=(1 << 62))] = None,
    deleted: Annotated[bool, Query()] = False,
    timeout_s: Annotated[float, Query(gt=0, le=MAX_WAIT_S)] = 30,
) -> Response:
    """Wait until the instance is in `state`, has converged to `generation`, or is deleted."""
    chosen = sum(x is not None and x is not False for x in (state, generation, deleted or None))
    if chosen != 1:
        raise InvalidInput("give exactly one of state, generation or deleted=true")
    outcome = await waiting.wait_for(daemon, ref=ref, state=state, generation=generation, deleted=deleted,
                                     timeout_s=timeout_s)
    if outcome is None:
        return Response(status_code=204)
    body: dict[str, Any] = outcome
    return JSONResponse(body, status_code=200)

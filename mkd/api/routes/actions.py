"""Lifecycle actions: load, unload, start, stop (synchronous)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Response

from mkd.api.deps import DaemonDep, IfMatch
from mkd.api.responses import INSTANCE_LINKS, problems
from mkd.api.schemas import ActionBody, InstanceOut, LoadBody
from mkd.services import lifecycle

router = APIRouter(prefix="/v1/instances/{ref}", tags=["actions"])

OptionalActionBody = Annotated[ActionBody | None, Body()]
_ERRORS = problems(403, 404, 409, 412, 413, 422, 502)
# An action's answer is the instance: its links lead on to the next action (OpenAPI links).
_ANSWERS = {200: {"links": INSTANCE_LINKS}, **_ERRORS}


def _reply(response: Response, result: tuple[dict[str, Any], str]) -> dict[str, Any]:
    body, etag = result
    response.headers["ETag"] = etag
    return body


@router.post("/load", response_model=InstanceOut, response_model_exclude_unset=True, responses=_ANSWERS)
def load(ref: str, body: LoadBody, daemon: DaemonDep, response: Response, if_match: IfMatch = None) -> dict[str, Any]:
    """kexec_file_load the kernel (and initrd) into the instance's pool."""
    return _reply(response, lifecycle.load(daemon=daemon, ref=ref, kernel=body.kernel, initrd=body.initrd,
                                           cmdline=body.cmdline, if_match=if_match))


@router.post("/unload", response_model=InstanceOut, response_model_exclude_unset=True, responses=_ANSWERS)
def unload(
    ref: str, daemon: DaemonDep, response: Response, body: OptionalActionBody = None,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Free the instance's kimage; an ACTIVE instance needs {"force": true}."""
    force = body.force if body else False
    return _reply(response, lifecycle.unload(daemon=daemon, ref=ref, force=force, if_match=if_match))


@router.post("/start", response_model=InstanceOut, response_model_exclude_unset=True, responses=_ANSWERS)
def start(
    ref: str, daemon: DaemonDep, response: Response, body: OptionalActionBody = None,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Start the loaded kernel (the multikernel reboot command)."""
    del body  # accepted for symmetry; start has no force variant
    return _reply(response, lifecycle.start(daemon=daemon, ref=ref, if_match=if_match))


@router.post("/stop", response_model=InstanceOut, response_model_exclude_unset=True, responses=_ANSWERS)
def stop(
    ref: str, daemon: DaemonDep, response: Response, body: OptionalActionBody = None,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    """Halt the instance: graceful, or forced with {"force": true}."""
    force = body.force if body else False
    return _reply(response, lifecycle.stop(daemon=daemon, ref=ref, force=force, if_match=if_match))

"""Error responses documented in the OpenAPI schema for every route."""

from __future__ import annotations

from typing import Any

from mkd.api.schemas import Problem

_P: dict[str, Any] = {"model": Problem, "content": {"application/problem+json": {}}}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    return dict.fromkeys(codes, _P)


def _links(parameter: str, expression: str, *operations: str) -> dict[str, Any]:
    return {op.split("-", 1)[1]: {"operationId": op, "parameters": {parameter: expression}} for op in operations}


# OpenAPI links: what a response's body names, and the operations that take it. Clients and
# schemathesis' stateful phase follow them (create → actions on that instance, and so on).
INSTANCE_LINKS = _links("ref", "$response.body#/id", "instances-read_instance", "instances-update_instance",
                        "instances-delete_instance", "instances-read_instance_device_tree", "actions-load",
                        "actions-start", "actions-stop", "actions-unload")
IMAGE_LINKS = _links("sha256", "$response.body#/sha256", "images-read_image", "images-delete_image")

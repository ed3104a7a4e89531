"""The headers of DESIGN "HTTP API" in the OpenAPI document, added in one place.

Middleware handles Idempotency-Key and services set ETag and Location, so the routes' signatures
do not show them; generated clients read them from here.
"""

from __future__ import annotations

from typing import Any

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    "description": "Makes a retry safe: the first response is stored for 24 h and replayed with "
                   "Idempotent-Replayed: true; the same key with another body is 422, in flight 409.",
}
REPLAYED = {"description": "Present (`true`) when this is a stored response replayed for an Idempotency-Key.",
            "schema": {"type": "string", "enum": ["true"]}}
ETAG = {"description": "Version of the resource; send it back in If-Match (or in If-None-Match on a GET).",
        "schema": {"type": "string"}}
LIST_ETAG = {"description": "Changes with any item of the page and with the page's membership; send it back "
                            "in If-None-Match.", "schema": {"type": "string"}}
IF_NONE_MATCH = {
    "name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
    "description": "An ETag (or several, or `*`): when the response's ETag is one of them, 304 without a body.",
}
NOT_MODIFIED = {"description": "Not modified: the ETag sent in If-None-Match is current.",
                "headers": {"ETag": ETAG}}
LOCATION = {"description": "Path of the created resource.", "schema": {"type": "string"}}
# Streams and the image list have no ETag of their own; the instance list has one per page.
NO_ETAG = {("get", "/v1/images"), ("get", "/v1/events")}
# DESIGN "HTTP API": the pool's ETag names the definition while `free` moves, so no 304 there.
NO_CONDITIONAL_GET = {"/v1/pool"}


def add_header_docs(schema: dict[str, Any]) -> dict[str, Any]:
    for path, operations in schema.get("paths", {}).items():
        if not path.startswith("/v1/") or path.startswith("/v1/session"):
            continue
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.get("responses", {})
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "Idempotency-Key" for p in parameters):
                    parameters.append(IDEMPOTENCY_KEY)
            if method == "get" and (method, path) not in NO_ETAG and path not in NO_CONDITIONAL_GET \
                    and any(status.startswith("2") for status in responses):
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == "If-None-Match" for p in parameters):
                    parameters.append(IF_NONE_MATCH)
                responses.setdefault("304", NOT_MODIFIED)
            for status, response in responses.items():
                if not status.startswith("2") or status == "204":
                    continue
                headers = response.setdefault("headers", {})
                if method == "post":
                    headers["Idempotent-Replayed"] = REPLAYED
                if (method, path) == ("get", "/v1/instances"):
                    headers["ETag"] = LIST_ETAG
                elif (method, path) not in NO_ETAG and not (status == "201" and path == "/v1/instances"):
                    headers["ETag"] = ETAG
                if status == "201" and method == "post":
                    headers["Location"] = LOCATION
    return schema
